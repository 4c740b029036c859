package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/drover-iot/drover/internal/modbussim"
	"github.com/spf13/cobra"
)

// modbusFlags are the flags of `devsim modbus`.
type modbusFlags struct {
	profile  string
	tcp      string
	rtu      bool
	ascii    bool
	baud     int
	pace     bool
	units    string
	unit     int
	seed     uint64
	drop     float64
	delay    time.Duration
	badCRC   float64
	exc      uint8
	faults   []string
	fwVer    string
	fwBoot   time.Duration
	logLevel string
}

func newModbusCmd() *cobra.Command {
	var f modbusFlags
	cmd := &cobra.Command{
		Use:   "modbus --profile sim.yaml [--tcp 127.0.0.1:5020] [--rtu] [--ascii] [--units 1-10 | --unit 3]",
		Short: "Simulate Modbus devices over TCP and/or RTU/ASCII on a pseudo-terminal",
		Long: `Serves one or many unit ids from a simulator profile (a device profile with sim blocks).

Prints "tcp: ADDR", "rtu: /dev/pts/N" and "ascii: /dev/pts/M" for what it serves, then "ready".
With neither --tcp, --rtu nor --ascii it serves TCP on 127.0.0.1:5020.

Faults: --drop, --delay, --bad-crc and --exception apply to every unit;
--fault "unit=3,drop=1" (repeatable) sets one unit's faults (keys: unit, drop, delay, bad-crc, exception).

Firmware: a profile with a firmware section takes images through its register
window (docs/firmware.md, "Modbus devices"). An image boots if it starts with
the line "DEVSIM-FW <version>" (the unit then reports <version>); one starting
with "BADBOOT" verifies but fails to boot, and the unit comes back running the
old version. --firmware-version sets the version every unit runs at start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runModbus(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.profile, "profile", "", "simulator profile YAML (required)")
	fl.StringVar(&f.tcp, "tcp", "", "serve Modbus TCP on this address (port 0 picks one)")
	fl.BoolVar(&f.rtu, "rtu", false, "serve Modbus RTU on a new pseudo-terminal")
	fl.BoolVar(&f.ascii, "ascii", false, "serve Modbus ASCII on a new pseudo-terminal")
	fl.IntVar(&f.baud, "baud", 19200, "serial line speed for pacing and frame gaps")
	fl.BoolVar(&f.pace, "pace", false, "delay serial replies by the request's and their own wire time at --baud plus t3.5")
	fl.StringVar(&f.units, "units", "", `unit ids to serve, e.g. "1-10" or "1,3,5-7" (default 1)`)
	fl.IntVar(&f.unit, "unit", 0, "serve this one unit id")
	fl.Uint64Var(&f.seed, "seed", 1, "seed for random walks and fault draws")
	fl.Float64Var(&f.drop, "drop", 0, "probability of not answering a request (every unit)")
	fl.DurationVar(&f.delay, "delay", 0, "extra delay before every reply (every unit)")
	fl.Float64Var(&f.badCRC, "bad-crc", 0, "probability of a corrupt CRC/LRC on serial replies (every unit)")
	fl.Uint8Var(&f.exc, "exception", 0, "answer every request with this exception code (every unit)")
	fl.StringArrayVar(&f.faults, "fault", nil, `per-unit faults, e.g. "unit=3,drop=0.5,delay=20ms" (repeatable)`)
	fl.StringVar(&f.fwVer, "firmware-version", "", `firmware version every unit runs at start (default: the profile's sim.firmware.version, else "1.0.0")`)
	fl.DurationVar(&f.fwBoot, "firmware-boot", 0, "how long a unit stays silent after applying an image (default: the profile's sim.firmware.boot_time, else 1s)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	_ = cmd.MarkFlagRequired("profile")
	return cmd
}

func runModbus(cmd *cobra.Command, f *modbusFlags) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}

	p, err := modbussim.LoadProfile(f.profile)
	if err != nil {
		return err
	}
	var units []byte
	switch {
	case f.units != "" && f.unit != 0:
		return errors.New("give --units or --unit, not both")
	case f.units != "":
		if units, err = modbussim.ParseUnits(f.units); err != nil {
			return err
		}
	case f.unit != 0:
		if f.unit < 1 || f.unit > 247 {
			return fmt.Errorf("--unit %d outside 1..247", f.unit)
		}
		units = []byte{byte(f.unit)}
	}
	if f.drop < 0 || f.drop > 1 || f.badCRC < 0 || f.badCRC > 1 {
		return errors.New("--drop and --bad-crc are probabilities in 0..1")
	}
	sim, err := modbussim.New(p, modbussim.Options{
		Units:  units,
		Logger: log,
		Seed:   f.seed,
		Baud:   f.baud,
		Pace:   f.pace,
		Faults: modbussim.Faults{Drop: f.drop, Delay: f.delay, BadCRC: f.badCRC, Exception: modbussim.ExceptionCode(f.exc)},

		FirmwareVersion: f.fwVer,
		FirmwareBoot:    f.fwBoot,
	})
	if err != nil {
		return err
	}
	defer sim.Close() // releases endpoints if we fail before Run
	for _, spec := range f.faults {
		id, fl, err := modbussim.ParseFaultSpec(spec)
		if err != nil {
			return err
		}
		targets := sim.Units()
		if id != 0 {
			if sim.Unit(id) == nil {
				return fmt.Errorf("--fault %q: unit %d is not served", spec, id)
			}
			targets = []byte{id}
		}
		for _, t := range targets {
			sim.Unit(t).SetFaults(fl)
		}
	}

	out := cmd.OutOrStdout()
	if f.tcp == "" && !f.rtu && !f.ascii {
		f.tcp = "127.0.0.1:5020"
	}
	if f.tcp != "" {
		addr, err := sim.ListenTCP(f.tcp)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "tcp: %s\n", addr)
	}
	for _, m := range []struct {
		on bool
		f  modbussim.Framing
	}{{f.rtu, modbussim.RTU}, {f.ascii, modbussim.ASCII}} {
		if !m.on {
			continue
		}
		path, err := sim.OpenPTY(m.f)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: %s\n", m.f, path)
	}
	fmt.Fprintln(out, "ready")
	log.Info("modbus simulator ready", "profile", p.Name, "units", len(sim.Units()))
	return sim.Run(cmd.Context())
}
