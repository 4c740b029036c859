package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"

	pluginpb "github.com/drover-iot/drover/plugins/proto"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// PluginName is the one name under which a plugin executable serves the
// contract, on both sides of the handshake.
const PluginName = "protocol"

// Handshake is shared by host and plugins. Bump ProtocolVersion for a
// breaking change of drover_plugin.proto (and serve both versions during the
// rollout with plugin.ServeConfig.VersionedPlugins). The cookie only stops a
// user from running a plugin by hand; it is not a security measure.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "DROVER_PLUGIN",
	MagicCookieValue: "7c3f9e12-drover-protocol-plugin",
}

// PluginMap is the plugin set the host hands to go-plugin. Treat it as
// read-only.
var PluginMap = plugin.PluginSet{PluginName: &GRPCPlugin{}}

// GRPCPlugin is the go-plugin glue for the contract. Impl is set only inside
// the plugin process; the host uses the zero value.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin
}

// Compile-time checks that the glue fits go-plugin and the adapters fit both
// sides of the contract.
var (
	_ plugin.Plugin         = (*GRPCPlugin)(nil)
	_ plugin.GRPCPlugin     = (*GRPCPlugin)(nil)
	_ Plugin                = (*GRPCClient)(nil)
	_ pluginpb.PluginServer = (*GRPCServer)(nil)
)

// GRPCServer registers the contract service around p.Impl (plugin side).
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("register plugin service: no implementation")
	}
	pluginpb.RegisterPluginServer(s, NewGRPCServer(p.Impl))
	return nil
}

// GRPCClient returns a *GRPCClient over c (host side).
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewGRPCClient(c), nil
}

// GRPCClient implements Plugin over a gRPC connection to a plugin. Every
// method passes its ctx to the stub, so the caller's deadline and
// cancellation reach the plugin. Errors carry a Code (see CodeOf); a call cut
// by the caller's deadline has CodeTimeout and unwraps to
// context.DeadlineExceeded.
type GRPCClient struct {
	client pluginpb.PluginClient
}

// NewGRPCClient returns a client adapter over cc.
func NewGRPCClient(cc grpc.ClientConnInterface) *GRPCClient {
	return &GRPCClient{client: pluginpb.NewPluginClient(cc)}
}

// Describe implements Plugin.
func (c *GRPCClient) Describe(ctx context.Context) (Description, error) {
	r, err := c.client.Describe(ctx, &pluginpb.Describe_Request{})
	if err != nil {
		return Description{}, fromRPC(ctx, "describe", err)
	}
	return descriptionFromPB(r), nil
}

// ValidateBus implements Plugin.
func (c *GRPCClient) ValidateBus(ctx context.Context, bus json.RawMessage) ([]FieldError, error) {
	r, err := c.client.ValidateBus(ctx, &pluginpb.ValidateBus_Request{Bus: bus})
	if err != nil {
		return nil, fromRPC(ctx, "validate bus", err)
	}
	return fieldErrorsFromPB(r.GetErrors()), nil
}

// ValidateProfile implements Plugin.
func (c *GRPCClient) ValidateProfile(ctx context.Context, profile json.RawMessage) ([]FieldError, error) {
	r, err := c.client.ValidateProfile(ctx, &pluginpb.ValidateProfile_Request{Profile: profile})
	if err != nil {
		return nil, fromRPC(ctx, "validate profile", err)
	}
	return fieldErrorsFromPB(r.GetErrors()), nil
}

// OpenBus implements Plugin.
func (c *GRPCClient) OpenBus(ctx context.Context, bus BusConfig) error {
	_, err := c.client.OpenBus(ctx, &pluginpb.OpenBus_Request{Name: bus.Name, Config: bus.Config})
	return fromRPC(ctx, "open bus "+bus.Name, err)
}

// CloseBus implements Plugin.
func (c *GRPCClient) CloseBus(ctx context.Context, name string) error {
	_, err := c.client.CloseBus(ctx, &pluginpb.CloseBus_Request{Name: name})
	return fromRPC(ctx, "close bus "+name, err)
}

// Attach implements Plugin.
func (c *GRPCClient) Attach(ctx context.Context, dev DeviceConfig) error {
	_, err := c.client.Attach(ctx, attachToPB(dev))
	return fromRPC(ctx, "attach "+dev.ID, err)
}

// Detach implements Plugin.
func (c *GRPCClient) Detach(ctx context.Context, deviceID string) error {
	_, err := c.client.Detach(ctx, &pluginpb.Detach_Request{DeviceId: deviceID})
	return fromRPC(ctx, "detach "+deviceID, err)
}

// Read implements Plugin.
func (c *GRPCClient) Read(ctx context.Context, deviceID string, points []string) ([]PointValue, error) {
	r, err := c.client.Read(ctx, &pluginpb.Read_Request{DeviceId: deviceID, Points: points})
	if err != nil {
		return nil, fromRPC(ctx, "read "+deviceID, err)
	}
	return pointValuesFromPB(r.GetValues()), nil
}

// Write implements Plugin.
func (c *GRPCClient) Write(ctx context.Context, deviceID string, values []PointWrite) ([]WriteResult, error) {
	r, err := c.client.Write(ctx, &pluginpb.Write_Request{DeviceId: deviceID, Values: pointWritesToPB(values)})
	if err != nil {
		return nil, fromRPC(ctx, "write "+deviceID, err)
	}
	return writeResultsFromPB(r.GetResults()), nil
}

// Identify implements Plugin.
func (c *GRPCClient) Identify(ctx context.Context, deviceID string) (Identity, error) {
	r, err := c.client.Identify(ctx, &pluginpb.Identify_Request{DeviceId: deviceID})
	if err != nil {
		return Identity{}, fromRPC(ctx, "identify "+deviceID, err)
	}
	return identityFromPB(r.GetIdentity()), nil
}

// Scan implements Plugin. progress is called on the calling goroutine, in
// the order the plugin sent the events; it may be nil.
func (c *GRPCClient) Scan(ctx context.Context, req ScanRequest, progress func(ScanEvent)) error {
	op := "scan bus " + req.Bus
	stream, err := c.client.Scan(ctx, scanRequestToPB(req))
	if err != nil {
		return fromRPC(ctx, op, err)
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fromRPC(ctx, op, err)
		}
		if progress != nil {
			progress(scanEventFromPB(ev))
		}
	}
}

// Reboot implements Plugin.
func (c *GRPCClient) Reboot(ctx context.Context, deviceID string, opts ManageOptions) error {
	_, err := c.client.Reboot(ctx, &pluginpb.Reboot_Request{
		DeviceId: deviceID, Options: &pluginpb.ManageOptions{Force: opts.Force},
	})
	return fromRPC(ctx, "reboot "+deviceID, err)
}

// FactoryReset implements Plugin.
func (c *GRPCClient) FactoryReset(ctx context.Context, deviceID string, opts ManageOptions) error {
	_, err := c.client.FactoryReset(ctx, &pluginpb.FactoryReset_Request{
		DeviceId: deviceID, Options: &pluginpb.ManageOptions{Force: opts.Force},
	})
	return fromRPC(ctx, "factory reset "+deviceID, err)
}

// Flash implements Plugin. progress is called on the calling goroutine, in
// the order the plugin sent the events; it may be nil.
func (c *GRPCClient) Flash(ctx context.Context, req FlashRequest, progress func(FlashEvent)) error {
	op := "flash " + req.DeviceID
	stream, err := c.client.Flash(ctx, flashRequestToPB(req))
	if err != nil {
		return fromRPC(ctx, op, err)
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fromRPC(ctx, op, err)
		}
		if progress != nil {
			progress(flashEventFromPB(ev))
		}
	}
}

// GRPCServer serves the contract service around a Plugin implementation
// (plugin side). Each RPC runs Impl with the RPC's context, and every error
// leaves as a gRPC status carrying its Code (see StatusError). It embeds
// UnimplementedPluginServer, so RPCs added to a later proto answer
// Unimplemented (CodeUnsupported on the host) instead of breaking the build.
type GRPCServer struct {
	pluginpb.UnimplementedPluginServer
	Impl Plugin
}

// NewGRPCServer returns a server adapter around impl.
func NewGRPCServer(impl Plugin) *GRPCServer {
	return &GRPCServer{Impl: impl}
}

// Describe implements pluginpb.PluginServer.
func (s *GRPCServer) Describe(ctx context.Context, _ *pluginpb.Describe_Request) (*pluginpb.Describe_Response, error) {
	d, err := s.Impl.Describe(ctx)
	if err != nil {
		return nil, StatusError(err)
	}
	return descriptionToPB(d), nil
}

// ValidateBus implements pluginpb.PluginServer.
func (s *GRPCServer) ValidateBus(ctx context.Context, r *pluginpb.ValidateBus_Request) (*pluginpb.ValidateBus_Response, error) {
	fes, err := s.Impl.ValidateBus(ctx, jsonFromPB(r.GetBus()))
	if err != nil {
		return nil, StatusError(err)
	}
	return &pluginpb.ValidateBus_Response{Errors: fieldErrorsToPB(fes)}, nil
}

// ValidateProfile implements pluginpb.PluginServer.
func (s *GRPCServer) ValidateProfile(ctx context.Context, r *pluginpb.ValidateProfile_Request) (*pluginpb.ValidateProfile_Response, error) {
	fes, err := s.Impl.ValidateProfile(ctx, jsonFromPB(r.GetProfile()))
	if err != nil {
		return nil, StatusError(err)
	}
	return &pluginpb.ValidateProfile_Response{Errors: fieldErrorsToPB(fes)}, nil
}

// OpenBus implements pluginpb.PluginServer.
func (s *GRPCServer) OpenBus(ctx context.Context, r *pluginpb.OpenBus_Request) (*pluginpb.OpenBus_Response, error) {
	if err := s.Impl.OpenBus(ctx, BusConfig{Name: r.GetName(), Config: jsonFromPB(r.GetConfig())}); err != nil {
		return nil, StatusError(err)
	}
	return &pluginpb.OpenBus_Response{}, nil
}

// CloseBus implements pluginpb.PluginServer.
func (s *GRPCServer) CloseBus(ctx context.Context, r *pluginpb.CloseBus_Request) (*pluginpb.CloseBus_Response, error) {
	if err := s.Impl.CloseBus(ctx, r.GetName()); err != nil {
		return nil, StatusError(err)
	}
	return &pluginpb.CloseBus_Response{}, nil
}

// Attach implements pluginpb.PluginServer.
func (s *GRPCServer) Attach(ctx context.Context, r *pluginpb.Attach_Request) (*pluginpb.Attach_Response, error) {
	if err := s.Impl.Attach(ctx, attachFromPB(r)); err != nil {
		return nil, StatusError(err)
	}
	return &pluginpb.Attach_Response{}, nil
}

// Detach implements pluginpb.PluginServer.
func (s *GRPCServer) Detach(ctx context.Context, r *pluginpb.Detach_Request) (*pluginpb.Detach_Response, error) {
	if err := s.Impl.Detach(ctx, r.GetDeviceId()); err != nil {
		return nil, StatusError(err)
	}
	return &pluginpb.Detach_Response{}, nil
}

// Read implements pluginpb.PluginServer.
func (s *GRPCServer) Read(ctx context.Context, r *pluginpb.Read_Request) (*pluginpb.Read_Response, error) {
	vs, err := s.Impl.Read(ctx, r.GetDeviceId(), r.GetPoints())
	if err != nil {
		return nil, StatusError(err)
	}
	return &pluginpb.Read_Response{Values: pointValuesToPB(vs)}, nil
}

// Write implements pluginpb.PluginServer.
func (s *GRPCServer) Write(ctx context.Context, r *pluginpb.Write_Request) (*pluginpb.Write_Response, error) {
	rs, err := s.Impl.Write(ctx, r.GetDeviceId(), pointWritesFromPB(r.GetValues()))
	if err != nil {
		return nil, StatusError(err)
	}
	return &pluginpb.Write_Response{Results: writeResultsToPB(rs)}, nil
}

// Identify implements pluginpb.PluginServer.
func (s *GRPCServer) Identify(ctx context.Context, r *pluginpb.Identify_Request) (*pluginpb.Identify_Response, error) {
	id, err := s.Impl.Identify(ctx, r.GetDeviceId())
	if err != nil {
		return nil, StatusError(err)
	}
	return &pluginpb.Identify_Response{Identity: identityToPB(id)}, nil
}

// Scan implements pluginpb.PluginServer.
func (s *GRPCServer) Scan(r *pluginpb.Scan_Request, stream pluginpb.Plugin_ScanServer) error {
	send := newStreamSender(stream.Send)
	err := s.Impl.Scan(stream.Context(), scanRequestFromPB(r), func(ev ScanEvent) {
		send.send(scanEventToPB(ev))
	})
	return send.finish(err)
}

// Reboot implements pluginpb.PluginServer.
func (s *GRPCServer) Reboot(ctx context.Context, r *pluginpb.Reboot_Request) (*pluginpb.Reboot_Response, error) {
	if err := s.Impl.Reboot(ctx, r.GetDeviceId(), ManageOptions{Force: r.GetOptions().GetForce()}); err != nil {
		return nil, StatusError(err)
	}
	return &pluginpb.Reboot_Response{}, nil
}

// FactoryReset implements pluginpb.PluginServer.
func (s *GRPCServer) FactoryReset(ctx context.Context, r *pluginpb.FactoryReset_Request) (*pluginpb.FactoryReset_Response, error) {
	if err := s.Impl.FactoryReset(ctx, r.GetDeviceId(), ManageOptions{Force: r.GetOptions().GetForce()}); err != nil {
		return nil, StatusError(err)
	}
	return &pluginpb.FactoryReset_Response{}, nil
}

// Flash implements pluginpb.PluginServer.
func (s *GRPCServer) Flash(r *pluginpb.Flash_Request, stream pluginpb.Plugin_FlashServer) error {
	send := newStreamSender(stream.Send)
	err := s.Impl.Flash(stream.Context(), flashRequestFromPB(r), func(ev FlashEvent) {
		send.send(flashEventToPB(ev))
	})
	return send.finish(err)
}

// streamSender serialises progress callbacks onto a server stream. An
// implementation may call progress from several goroutines, and even after
// it returned (a bug, but not one that should crash the plugin): Send is not
// safe for concurrent use nor after the handler returns, so calls are
// serialised and dropped once the stream is finished or broken.
type streamSender[T any] struct {
	mu     sync.Mutex
	sendFn func(T) error
	err    error
	done   bool
}

func newStreamSender[T any](send func(T) error) *streamSender[T] {
	return &streamSender[T]{sendFn: send}
}

func (s *streamSender[T]) send(v T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || s.err != nil {
		return
	}
	s.err = s.sendFn(v)
}

// finish closes the sender and returns the handler's result: the
// implementation's error if any, else the first send error.
func (s *streamSender[T]) finish(implErr error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	if implErr != nil {
		return StatusError(implErr)
	}
	return s.err
}
