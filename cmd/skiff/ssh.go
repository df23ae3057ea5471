package main

import (
	"errors"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/skiff-dev/skiff/cmd/internal/hostcmd"
	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

func sshCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "ssh [NAME] [-- COMMAND...]",
		Short:             "Open a shell in a machine, or run a command there",
		ValidArgsFunction: completeMachines,
		RunE: func(cmd *cobra.Command, args []string) error {
			var name string
			dash := cmd.ArgsLenAtDash()
			switch {
			case dash == 0 || len(args) == 0:
				name = machine.DefaultName
			default:
				name = args[0]
			}
			if err := machine.ValidateName(name); err != nil {
				return machine.ErrInvalidf("%v", err)
			}
			var command []string
			if dash >= 0 {
				command = args[dash:]
			} else if len(args) > 1 {
				return machine.ErrInvalidf("put the command after --: skiff machine ssh NAME -- COMMAND")
			}
			code, err := runSSH(cmd, name, command)
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
}

func runSSH(cmd *cobra.Command, name string, command []string) (int, error) {
	m, err := manager(hostcmd.Options{})
	if err != nil {
		return 0, err
	}
	d, _, err := m.Machine(name)
	if err != nil {
		return 0, err
	}
	if st := d.Status(cmd.Context()); st.State != machine.StateRunning {
		return 0, &machine.Error{Name: name, Class: machine.ErrState, Detail: "is " + string(st.State), Hint: "start it with: skiff machine start" + nameSuffix(name)}
	}
	cfg, err := d.SSHClientConfig()
	if err != nil {
		return 0, err
	}
	conn, err := agentapi.NewClient(d.Sock(machine.SockControl)).Connect(cmd.Context(), forward.ServiceSSH)
	if err != nil {
		return 0, err
	}
	client, err := d.SSHClient(conn, cfg)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
	fd := int(os.Stdin.Fd())
	interactive := len(command) == 0
	if term.IsTerminal(fd) && (interactive || term.IsTerminal(int(os.Stdout.Fd()))) {
		w, h, _ := term.GetSize(fd)
		t := os.Getenv("TERM")
		if t == "" {
			t = "xterm-256color"
		}
		if err := sess.RequestPty(t, h, w, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
			return 0, err
		}
		old, err := term.MakeRaw(fd)
		if err == nil {
			defer term.Restore(fd, old)
		}
		go watchResize(fd, sess)
	}
	if interactive {
		if err := sess.Shell(); err != nil {
			return 0, err
		}
		err = sess.Wait()
	} else {
		// Like OpenSSH: words are joined and the remote shell parses them.
		err = sess.Run(strings.Join(command, " "))
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus(), nil
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return 255, nil
	}
	return 0, err
}

func watchResize(fd int, sess *ssh.Session) {
	ch := make(chan os.Signal, 1)
	notifyResize(ch)
	defer signal.Stop(ch)
	for range ch {
		if w, h, err := term.GetSize(fd); err == nil {
			sess.WindowChange(h, w)
		}
	}
}
