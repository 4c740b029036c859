// Package upstream is the gateway's device-side client for one identity (the
// gateway itself or one child device) on an upstream hub that speaks the
// Azure IoT Hub MQTT device protocol: Drover's localhub or Azure IoT Hub.
//
// A Client owns one MQTT 3.1.1 connection over TLS at a time and its
// reconnect loop. Every CONNECT carries a freshly signed SAS token; shortly
// before that token expires the client reconnects with a new one, which is
// how token renewal works over MQTT [azure note 1.3]. After every connect it
// subscribes to twin responses, desired-property notifications and direct
// methods, then tells the Handler. Twin GETs and reported patches are
// correlated with the hub's replies by $rid; telemetry is published at QoS 1.
//
// This package is the only one in the gateway that imports paho; its API
// speaks in Drover's own types.
//
// Threading: Handler.Connected, DesiredPatch and Disconnected are called one
// at a time, in the order the events happened, on one goroutine owned by Run.
// Handler.Method runs on a bounded pool of workers, concurrently with the
// rest. Every other method of Client is safe for concurrent use.
package upstream
