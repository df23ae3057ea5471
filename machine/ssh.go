package machine

import (
	"fmt"
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
