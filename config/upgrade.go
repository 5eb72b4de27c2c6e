package config

import (
	"fmt"
	"strconv"
)

// lastMinor is the last release series of each finished major version: the
// series from which the next major's .0 is reached.
var lastMinor = map[int]int{3: 13}

// ParseVersion reads the release series of a RabbitMQ version or image tag:
// "3.10.8", "3.13-management", "4.0".
func ParseVersion(s string) Version {
	m := tagVersion.FindStringSubmatch(s)
	if m == nil {
		return Version{}
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return Version{major, minor}
}

// next is the series an in-place upgrade from v goes to: x.y+1, or the
// next major's .0 after a major's last series.
func (v Version) next() Version {
	if last, ok := lastMinor[v.Major]; ok && v.Minor >= last {
		return Version{v.Major + 1, 0}
	}
	return Version{v.Major, v.Minor + 1}
}

// CheckUpgrade is the version guard. RabbitMQ upgrades in place only within
// a release series or to the next one (with every feature flag enabled), so
// a node whose data was written by running must not be started by c's image
// when that crosses series any other way: a downgrade, or a skipped series
// such as 3.10 to 4.0. allowUnsupportedUpgrade lifts it. Versions that are
// unknown (an image without a version tag) are not checked.
func (c *Config) CheckUpgrade(running Version) error {
	to := c.RabbitMQVersion
	if c.AllowUnsupportedUpgrade || !running.Known() || !to.Known() || to == running {
		return nil
	}
	next := running.next()
	var rule string
	switch {
	case !to.AtLeast(running.Major, running.Minor):
		rule = fmt.Sprintf("is a downgrade from the running RabbitMQ %s: its nodes would start on data written by a newer version", running)
	case to != next:
		rule = fmt.Sprintf("skips release series: the nodes run %s, and RabbitMQ upgrades in place only to the next series (%s), with every feature flag enabled", running, next)
	default:
		return nil
	}
	return &FieldError{
		Key:   KeyRabbitMQImage,
		Value: strconv.Quote(c.RabbitMQImage),
		Rule: rule + fmt.Sprintf("; upgrade one series at a time (see docs/RUNBOOK.md), or set %s to true if you know better",
			KeyAllowUpgrade),
	}
}
