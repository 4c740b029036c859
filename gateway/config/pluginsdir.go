package config

// PluginsDirOf returns the plugin directory the gateway.yaml at path would
// use (plugins.dir resolved against the file, or the default), even when
// the file has problems; "" when it cannot be read at all. `drover config
// check` uses it to find the plugins that validate their own keys.
func PluginsDirOf(path string) string {
	c, _ := load(osFiles{}, path)
	if c == nil {
		return ""
	}
	return c.Plugins.Dir
}
