package config

import (
	"context"
)

// Check is `drover config check`: it loads gateway.yaml at path with its
// profiles and, when validators is not nil, has each plugin validate its
// buses and profiles. It returns every problem found, sorted by file and
// line (none means the configuration is good). err is set only when the
// check itself could not run: a plugin call failed or ctx ended. Print the
// problems with FormatProblems.
func Check(ctx context.Context, path string, validators map[string]PluginValidator) (found []Problem, err error) {
	c, ps := load(osFiles{}, path)
	if c != nil && validators != nil {
		if err := c.pluginProblems(ctx, validators, ps); err != nil {
			return nil, err
		}
	}
	return ps.sorted(), nil
}
