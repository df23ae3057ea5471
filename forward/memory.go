package forward

// ServiceMemory is the guest agent's stream of MemoryReports: one JSON line at once, then
// one whenever the guest's memory moved enough to matter or it came under pressure. The
// host agent's memory policy (a balloon the host must set, as on vz) follows it.
const ServiceMemory = "memory"

// MemoryReport is the guest's memory as its kernel sees it.
type MemoryReport struct {
	// TotalKiB is MemTotal: what the guest has now (an inflated balloon takes from it).
	TotalKiB int64 `json:"totalKiB"`
	// AvailableKiB is MemAvailable: what could be used without swapping, page cache
	// that can be dropped included.
	AvailableKiB int64 `json:"availableKiB"`
	// Some10 is the share (percent) of the last 10 s in which some task stalled waiting
	// for memory (PSI's "some avg10"); -1 without PSI.
	Some10 float64 `json:"some10"`
	// Pressure: the kernel's PSI trigger fired: tasks stall on memory now. The host must
	// give memory back at once.
	Pressure bool `json:"pressure,omitempty"`
}

// UsedKiB is what the guest uses and could not drop.
func (r MemoryReport) UsedKiB() int64 { return max(r.TotalKiB-r.AvailableKiB, 0) }
