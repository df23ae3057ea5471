package agentapi

// Memory is the VM's memory as the host sees it, and how unused guest memory goes back.
type Memory struct {
	// Reclaim is how the VM returns memory (vmm.Reclaim*: free-page-reporting, balloon,
	// dynamic-memory, off).
	Reclaim string `json:"reclaim,omitempty"`
	// MachineBytes is the machine's memory size.
	MachineBytes uint64 `json:"machineBytes"`
	// HostBytes is the VM process's resident memory on the host (QEMU; 0 where the VM is
	// not a process Skiff can read).
	HostBytes uint64 `json:"hostBytes,omitempty"`
	// TargetBytes is what the balloon leaves the guest, BalloonBytes what it holds back,
	// and BalloonMoves how often the policy moved it (balloon reclaim only).
	TargetBytes  uint64 `json:"targetBytes,omitempty"`
	BalloonBytes uint64 `json:"balloonBytes,omitempty"`
	BalloonMoves int    `json:"balloonMoves,omitempty"`
	// GuestUsedBytes and GuestAvailableBytes are the guest's last report (balloon reclaim
	// only): what it uses and could not drop, and what it could still use.
	GuestUsedBytes      uint64 `json:"guestUsedBytes,omitempty"`
	GuestAvailableBytes uint64 `json:"guestAvailableBytes,omitempty"`
}
