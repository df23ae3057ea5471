package transport

import "time"

// aheadAge is how long a stream opened ahead is kept unused: well under the 5 minutes
// dockerd waits for a new connection's first request before it closes it.
const aheadAge = 2 * time.Minute
