package main

import (
	"errors"
	"sort"
	"strings"
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
