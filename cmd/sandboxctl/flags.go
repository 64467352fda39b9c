package main

import (
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sandboxd/sandboxd/policy"
)

// keyValues is a repeatable KEY=VALUE flag (--label, --env) that collects
// into a map; a later value for the same key wins.
type keyValues map[string]string

// String returns the pairs sorted by key, comma-separated.
func (kv keyValues) String() string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + kv[k]
	}
	return strings.Join(pairs, ",")
}

// Set adds one KEY=VALUE pair; the key may not be empty, the value may.
func (kv keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want KEY=VALUE")
	}
	kv[k] = v
	return nil
}

// sizeFlag is a flag for a number of bytes written as in the policy file
// (512Mi, 1G, 1048576; see policy.ParseSize), stored in *p. Zero is refused:
// in a request it would mean "the template's", not zero bytes.
type sizeFlag struct{ p *int64 }

func (f sizeFlag) String() string {
	if f.p == nil || *f.p == 0 {
		return ""
	}
	return policy.Size(*f.p).String()
}

func (f sizeFlag) Set(s string) error {
	v, err := policy.ParseSize(s)
	if err != nil {
		return err
	}
	if v == 0 {
		return errors.New("must be greater than 0 (leave the flag out to keep the template's)")
	}
	*f.p = int64(v)
	return nil
}

// countFlag is a flag for a whole number greater than 0, stored in *p.
type countFlag struct{ p *int64 }

func (f countFlag) String() string {
	if f.p == nil || *f.p == 0 {
		return ""
	}
	return strconv.FormatInt(*f.p, 10)
}

func (f countFlag) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return errors.New("want a whole number greater than 0")
	}
	*f.p = v
	return nil
}

// cpuFlag is a flag for a number of CPU cores written as in the policy
// file, a number (1, 0.5) or millicores (500m), stored in *p.
type cpuFlag struct{ p *float64 }

func (f cpuFlag) String() string {
	if f.p == nil || *f.p == 0 {
		return ""
	}
	return strconv.FormatFloat(*f.p, 'g', -1, 64)
}

func (f cpuFlag) Set(s string) error {
	var v float64
	var err error
	if milli, ok := strings.CutSuffix(s, "m"); ok {
		var m int64
		m, err = strconv.ParseInt(milli, 10, 64)
		v = float64(m) / 1000
	} else {
		v, err = strconv.ParseFloat(s, 64)
	}
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return errors.New("want a number of cores greater than 0, such as 1, 0.5 or 500m")
	}
	*f.p = v
	return nil
}

// durationFlag is a flag for a duration written as in the policy file
// (90s, 10m, 1h30m; greater than 0, see policy.ParseDuration), stored in
// *p.
type durationFlag struct{ p **durationpb.Duration }

func (f durationFlag) String() string {
	if f.p == nil || *f.p == nil {
		return ""
	}
	return policy.Duration((*f.p).AsDuration()).String()
}

func (f durationFlag) Set(s string) error {
	v, err := policy.ParseDuration(s)
	if err != nil {
		return err
	}
	*f.p = durationpb.New(time.Duration(v))
	return nil
}
