package runsc

import (
	"context"
	"encoding/json"
	"fmt"
)

// State is the output of `runsc state`.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

// State describes sandbox id.
func (r *Runsc) State(ctx context.Context, id string) (*State, error) {
	out, err := r.run(ctx, "state", id)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("parsing runsc state output: %w", err)
	}
	return &s, nil
}
