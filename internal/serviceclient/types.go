package serviceclient

import "encoding/json"

// Device is an identity in the registry (swagger "Device"; notes 2.3).
// Timestamps are kept as the hub wrote them: Azure writes unset ones as
// "0001-01-01T00:00:00", which is not RFC 3339.
type Device struct {
	DeviceID                   string          `json:"deviceId"`
	GenerationID               string          `json:"generationId,omitempty"`
	ETag                       string          `json:"etag,omitempty"`
	ConnectionState            string          `json:"connectionState,omitempty"`
	Status                     string          `json:"status,omitempty"`
	StatusReason               string          `json:"statusReason,omitempty"`
	ConnectionStateUpdatedTime string          `json:"connectionStateUpdatedTime,omitempty"`
	StatusUpdatedTime          string          `json:"statusUpdatedTime,omitempty"`
	LastActivityTime           string          `json:"lastActivityTime,omitempty"`
	CloudToDeviceMessageCount  int             `json:"cloudToDeviceMessageCount"`
	Authentication             *Authentication `json:"authentication,omitempty"`
	Capabilities               *Capabilities   `json:"capabilities,omitempty"`
	DeviceScope                string          `json:"deviceScope,omitempty"`
	ParentScopes               []string        `json:"parentScopes,omitempty"`
}

// Device statuses.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// Authentication types.
const (
	AuthSAS                  = "sas"
	AuthSelfSigned           = "selfSigned"
	AuthCertificateAuthority = "certificateAuthority"
	AuthNone                 = "none"
)

// Authentication holds a device's credentials.
type Authentication struct {
	Type           string          `json:"type"`
	SymmetricKey   *SymmetricKey   `json:"symmetricKey,omitempty"`
	X509Thumbprint *X509Thumbprint `json:"x509Thumbprint,omitempty"`
}

// SymmetricKey is a pair of base64 keys. Empty keys on create ask the hub to generate them.
type SymmetricKey struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// X509Thumbprint is a pair of certificate thumbprints.
type X509Thumbprint struct {
	PrimaryThumbprint   string `json:"primaryThumbprint,omitempty"`
	SecondaryThumbprint string `json:"secondaryThumbprint,omitempty"`
}

// Capabilities are a device's optional features.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// IsEdge reports whether the device is an IoT Edge device (a gateway that can parent others).
func (d *Device) IsEdge() bool { return d.Capabilities != nil && d.Capabilities.IoTEdge }

// Keys returns the device's symmetric keys, or nil for a device without them.
func (d *Device) Keys() *SymmetricKey {
	if d.Authentication == nil || d.Authentication.SymmetricKey == nil {
		return nil
	}
	k := d.Authentication.SymmetricKey
	if k.PrimaryKey == "" && k.SecondaryKey == "" {
		return nil
	}
	return k
}

// Twin is a device twin (swagger "Twin"; notes 2.4 and 4.1). In a patch only
// Tags and Properties.Desired are honoured.
type Twin struct {
	DeviceID                  string          `json:"deviceId,omitempty"`
	ModuleID                  string          `json:"moduleId,omitempty"`
	ETag                      string          `json:"etag,omitempty"`
	DeviceETag                string          `json:"deviceEtag,omitempty"`
	Version                   int64           `json:"version,omitempty"`
	Status                    string          `json:"status,omitempty"`
	StatusReason              string          `json:"statusReason,omitempty"`
	StatusUpdateTime          string          `json:"statusUpdateTime,omitempty"`
	ConnectionState           string          `json:"connectionState,omitempty"`
	LastActivityTime          string          `json:"lastActivityTime,omitempty"`
	CloudToDeviceMessageCount int             `json:"cloudToDeviceMessageCount,omitempty"`
	AuthenticationType        string          `json:"authenticationType,omitempty"`
	X509Thumbprint            *X509Thumbprint `json:"x509Thumbprint,omitempty"`
	ModelID                   string          `json:"modelId,omitempty"`
	Capabilities              *Capabilities   `json:"capabilities,omitempty"`
	DeviceScope               string          `json:"deviceScope,omitempty"`
	ParentScopes              []string        `json:"parentScopes,omitempty"`
	Tags                      map[string]any  `json:"tags,omitempty"`
	Properties                TwinProperties  `json:"properties,omitzero"`
}

// TwinProperties are the desired and reported sections, each with its
// "$version" and "$metadata" as the hub sends them. A nil value in a patch
// map deletes the property.
type TwinProperties struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
}

// MethodRequest is the body of a direct method call (notes 2.5).
type MethodRequest struct {
	MethodName string `json:"methodName"`
	// Payload is any JSON document; nil is sent as null.
	Payload json.RawMessage `json:"payload"`
	// ResponseTimeoutInSeconds is how long the hub waits for the answer (0: hub default, 30 s).
	ResponseTimeoutInSeconds int `json:"responseTimeoutInSeconds,omitempty"`
	// ConnectTimeoutInSeconds is how long the hub waits for a disconnected device to come online.
	ConnectTimeoutInSeconds int `json:"connectTimeoutInSeconds,omitempty"`
}

// MethodResponse is the device's answer to a direct method.
type MethodResponse struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Bulk import modes (notes 2.3; the hub compares them case-insensitively).
const (
	ImportCreate            = "create"
	ImportUpdate            = "update"
	ImportUpdateIfMatchETag = "updateIfMatchETag"
	ImportDelete            = "delete"
	ImportDeleteIfMatchETag = "deleteIfMatchETag"
)

// ExportImportDevice is one entry of a bulk registry operation.
type ExportImportDevice struct {
	ID             string          `json:"id"`
	ModuleID       string          `json:"moduleId,omitempty"`
	ETag           string          `json:"eTag,omitempty"`
	ImportMode     string          `json:"importMode"`
	Status         string          `json:"status,omitempty"`
	StatusReason   string          `json:"statusReason,omitempty"`
	Authentication *Authentication `json:"authentication,omitempty"`
	TwinETag       string          `json:"twinETag,omitempty"`
	Tags           map[string]any  `json:"tags,omitempty"`
	Properties     *TwinProperties `json:"properties,omitempty"`
	Capabilities   *Capabilities   `json:"capabilities,omitempty"`
	DeviceScope    string          `json:"deviceScope,omitempty"`
	ParentScopes   []string        `json:"parentScopes,omitempty"`
}

// BulkResult is the answer to a bulk registry operation.
type BulkResult struct {
	IsSuccessful bool              `json:"isSuccessful"`
	Errors       []BulkDeviceError `json:"errors,omitempty"`
	Warnings     []BulkWarning     `json:"warnings,omitempty"`
}

// BulkDeviceError is the failure of one entry of a bulk operation.
type BulkDeviceError struct {
	DeviceID    string `json:"deviceId"`
	ModuleID    string `json:"moduleId,omitempty"`
	ErrorCode   string `json:"errorCode"`
	ErrorStatus string `json:"errorStatus"`
	Operation   string `json:"operation,omitempty"`
}

// BulkWarning is a warning about one entry of a bulk operation.
type BulkWarning struct {
	DeviceID      string `json:"deviceId"`
	WarningCode   string `json:"warningCode"`
	WarningStatus string `json:"warningStatus"`
}

// Attestation types of enrollment groups.
const AttestationSymmetricKey = "symmetricKey"

// EnrollmentGroup is a localhub enrollment group: children of ParentDeviceID
// provision themselves with keys derived from the group key (sas.DeriveKey).
type EnrollmentGroup struct {
	EnrollmentGroupID      string      `json:"enrollmentGroupId"`
	Attestation            Attestation `json:"attestation"`
	ParentDeviceID         string      `json:"parentDeviceId,omitempty"`
	ProvisioningStatus     string      `json:"provisioningStatus,omitempty"`
	ETag                   string      `json:"etag,omitempty"`
	CreatedDateTimeUTC     string      `json:"createdDateTimeUtc,omitempty"`
	LastUpdatedDateTimeUTC string      `json:"lastUpdatedDateTimeUtc,omitempty"`
}

// Attestation is how members of an enrollment group prove who they are.
type Attestation struct {
	Type         string        `json:"type"`
	SymmetricKey *SymmetricKey `json:"symmetricKey,omitempty"`
}
