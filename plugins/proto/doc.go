// Package pluginpb is the generated gRPC code for drover_plugin.proto, the
// wire contract between the gateway and its protocol plugins.
//
// Do not edit the *.pb.go files: change drover_plugin.proto and run
// `make proto`. Go code should not use this package directly; package
// plugins wraps it in the plugins.Plugin interface.
package pluginpb
