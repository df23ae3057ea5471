package machine

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
)

// SSHClientConfig logs in to the machine's sshd as root with the machine's key and pins
// the host key made at init: the CLI's ssh and the host agent's fetches from the guest.
func (d Dir) SSHClientConfig() (*ssh.ClientConfig, error) {
	keyPEM, err := os.ReadFile(d.File(FileSSHKey))
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("machine ssh key: %w", err)
	}
	hostPub, err := os.ReadFile(d.File(FileHostKey + ".pub"))
	if err != nil {
		return nil, err
	}
	pinned, _, _, _, err := ssh.ParseAuthorizedKey(hostPub)
	if err != nil {
		return nil, fmt.Errorf("pinned host key: %w", err)
	}
	return &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(pinned),
	}, nil
}

// SSHClient speaks ssh over conn, a stream to the machine's sshd, with cfg (from
// SSHClientConfig). The host key is checked against the pinned one under the machine's
// own host name. On failure conn is closed.
func (d Dir) SSHClient(conn net.Conn, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	c, chans, reqs, err := ssh.NewClientConn(conn, "skiff-"+d.Name, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh: %w", err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}
