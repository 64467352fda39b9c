package runsc

import (
	"context"
	"encoding/json"
	"fmt"
)

// Container is one entry of `runsc list`.
type Container struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

// List returns the sandboxes in the state root.
func (r *Runsc) List(ctx context.Context) ([]Container, error) {
	out, err := r.run(ctx, "list", "--format=json")
	if err != nil {
		return nil, err
	}
	var cs []Container
	if err := json.Unmarshal(out, &cs); err != nil {
		return nil, fmt.Errorf("parsing runsc list output: %w", err)
	}
	return cs, nil
}
