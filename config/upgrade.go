package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// upgradableFrom is RabbitMQ's published upgrade matrix: for each release
// series, the series a cluster may be upgraded from in place (rolling, with
// every stable feature flag enabled first). Within a series any patch goes.
// Source: https://www.rabbitmq.com/docs/upgrade#rabbitmq-version-upgradability
// (4.3 from 4.2 only; 4.2, 4.1 and 4.0 from 3.13 and the 4.x before them;
// each 3.x from the series before it). A series missing here is checked by
// the rule the matrix follows for the 3.x line: from the series before it.
var upgradableFrom = map[Version][]Version{
	{4, 3}:  {{4, 2}},
	{4, 2}:  {{3, 13}, {4, 0}, {4, 1}},
	{4, 1}:  {{3, 13}, {4, 0}},
	{4, 0}:  {{3, 13}},
	{3, 13}: {{3, 12}},
	{3, 12}: {{3, 11}},
	{3, 11}: {{3, 10}},
	{3, 10}: {{3, 9}},
	{3, 9}:  {{3, 8}},
}

// lastMinor is the last release series of each finished major version,
// for series the matrix does not list.
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

// previous is the series before v, for series the matrix does not list.
func (v Version) previous() Version {
	if v.Minor > 0 {
		return Version{v.Major, v.Minor - 1}
	}
	return Version{v.Major - 1, lastMinor[v.Major-1]}
}

// UpgradableFrom returns the series an in-place upgrade to v may start from.
func UpgradableFrom(v Version) []Version {
	if from, ok := upgradableFrom[v]; ok {
		return from
	}
	return []Version{v.previous()}
}

// CheckUpgrade is the version guard. RabbitMQ upgrades in place only along
// its published matrix (upgradableFrom), so a node whose data was written by
// running must not be started by c's image when that goes any other way: a
// downgrade, or a path the matrix does not list, such as 3.10 to 4.0 or
// 4.1 to 4.3. allowUnsupportedUpgrade lifts it. Versions that are unknown
// (an image without a version tag) are not checked.
func (c *Config) CheckUpgrade(running Version) error {
	to := c.RabbitMQVersion
	if c.AllowUnsupportedUpgrade || !running.Known() || !to.Known() || to == running {
		return nil
	}
	from := UpgradableFrom(to)
	var rule string
	switch {
	case !to.AtLeast(running):
		rule = fmt.Sprintf("is a downgrade from the running RabbitMQ %s: its nodes would start on data written by a newer version", running)
	case !slices.Contains(from, running):
		names := make([]string, len(from))
		for i, v := range from {
			names[i] = v.String()
		}
		rule = fmt.Sprintf("is not an in-place upgrade RabbitMQ supports: the nodes run %s, and %s is upgraded to only from %s (with every feature flag enabled)",
			running, to, strings.Join(names, ", "))
	default:
		return nil
	}
	return &FieldError{
		Key:   KeyRabbitMQImage,
		Value: strconv.Quote(c.RabbitMQImage),
		Rule: rule + fmt.Sprintf("; upgrade along RabbitMQ's upgrade matrix (see docs/RUNBOOK.md), or set %s to true if you know better",
			KeyAllowUpgrade),
	}
}
