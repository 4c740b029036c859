package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/sas"
	"github.com/drover-iot/drover/internal/serviceclient"
	"github.com/drover-iot/drover/internal/version"
)

// Environment variables read when the matching global flag is not given.
const (
	envConnectionString = "DROVER_HUB_CONNECTION_STRING"
	envCAFile           = "DROVER_CA_FILE"
	envAddress          = "DROVER_HUB_ADDRESS"
)

// Output formats.
const (
	outputTable = "table"
	outputJSON  = "json"
)

const defaultTimeout = 30 * time.Second

// app holds what every command shares: the global flags and the streams.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	connectionString string
	caFile           string
	address          string
	output           string
	timeout          time.Duration
	timeoutSet       bool

	// started is set once a command's own code runs; errors before that are usage errors.
	started bool
}

// run executes droverctl with args and returns the process exit code: 0 on
// success, 1 on any failure, after one "droverctl: …" line on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	if !a.started && cmd != nil && cmd != root {
		// Wrong arguments or flags: say which command, and where its help is.
		p := cmd.CommandPath()
		err = fmt.Errorf("%s: %w (see '%s --help')", strings.TrimPrefix(p, root.Name()+" "), err, p)
	}
	fmt.Fprintf(stderr, "droverctl: %s\n", errorLine(err))
	return 1
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:     "droverctl",
		Version: version.Version,
		Short:   "Operate a Drover hub (localhub or Azure IoT Hub) over its service API",
		Long: `droverctl manages device identities, twins, direct methods, queries,
telemetry and enrollment groups through the IoT Hub service REST API.

The hub is named by a service connection string
(HostName=…;SharedAccessKeyName=…;SharedAccessKey=…), from --connection-string
or ` + envConnectionString + `.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.resolveGlobals(cmd); err != nil {
				return err
			}
			// Checked here rather than after this hook, so that every usage
			// error is known before a command's own code starts.
			if err := cmd.ValidateRequiredFlags(); err != nil {
				return err
			}
			if err := cmd.ValidateFlagGroups(); err != nil {
				return err
			}
			a.started = true
			return nil
		},
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&a.connectionString, "connection-string", "", "hub service connection string (env "+envConnectionString+")")
	pf.StringVar(&a.caFile, "ca-file", "", "PEM file of the CA that signed the hub's certificate (env "+envCAFile+")")
	pf.StringVar(&a.address, "address", "", "hub host:port to connect to; default HostName:8443, or :443 for Azure (env "+envAddress+")")
	pf.StringVarP(&a.output, "output", "o", outputTable, "output format: table or json")
	pf.DurationVar(&a.timeout, "timeout", defaultTimeout, "time limit for the whole command")
	root.AddCommand(a.deviceCmd(), a.twinCmd(), a.invokeCmd(), a.queryCmd(), a.monitorCmd(), a.enrollmentCmd())
	root.AddCommand(a.jobCmd())
	root.AddCommand(a.firmwareCmd())
	return root
}

// resolveGlobals applies environment fallbacks and checks the global flags.
func (a *app) resolveGlobals(cmd *cobra.Command) error {
	fl := cmd.Flags()
	if !fl.Changed("connection-string") {
		a.connectionString = a.getenv(envConnectionString)
	}
	if !fl.Changed("ca-file") {
		a.caFile = a.getenv(envCAFile)
	}
	if !fl.Changed("address") {
		a.address = a.getenv(envAddress)
	}
	if f := fl.Lookup("timeout"); f != nil && f.Changed {
		a.timeoutSet = true
	}
	switch a.output {
	case outputTable, outputJSON:
	default:
		return fmt.Errorf("--output %q: want table or json", a.output)
	}
	return nil
}

// client builds the service client from the global flags.
func (a *app) client() (*serviceclient.Client, error) {
	if a.connectionString == "" {
		return nil, errors.New("no hub connection string: use --connection-string or set " + envConnectionString)
	}
	cs, err := sas.ParseConnectionString(a.connectionString)
	if err != nil {
		return nil, fmt.Errorf("hub connection string: %w", err)
	}
	c, err := serviceclient.New(cs, serviceclient.Options{Address: a.address, CAFile: a.caFile})
	if err != nil {
		return nil, fmt.Errorf("hub connection string: %w", err)
	}
	return c, nil
}

// withTimeout bounds a command by --timeout.
func (a *app) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, a.timeout, fmt.Errorf("timed out after %s (see --timeout)", a.timeout))
}

// wantJSON reports whether -o json was asked for.
func (a *app) wantJSON() bool { return a.output == outputJSON }

// errorLine is err on one line, with a hint for the failures operators meet most.
func errorLine(err error) string {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case errors.As(err, &ua):
		msg += " (is --ca-file the hub's CA certificate?)"
	case errors.As(err, &he):
		msg += " (the certificate must name the connection string's HostName)"
	case errors.Is(err, serviceclient.ErrUnauthorized):
		msg += " (check the connection string's key and policy)"
	}
	return msg
}

// cause replaces a bare deadline error with the reason the context ended.
func cause(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.DeadlineExceeded) {
			return c
		}
	}
	return err
}
