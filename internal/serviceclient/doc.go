// Package serviceclient is a client for the IoT Hub service REST API: the
// identity registry, twins, direct methods and queries, as Azure IoT Hub
// serves them, plus the localhub extensions (telemetry events as a
// Server-Sent Events stream and symmetric-key enrollment groups).
//
// Every request carries a freshly signed shared access signature for the
// policy in the connection string (sr = HostName, skn = policy name), the
// api-version query parameter and a Request-Id, as the Azure service SDKs do
// (notes: "6.2 Service"). Hub errors come back as *APIError.
package serviceclient
