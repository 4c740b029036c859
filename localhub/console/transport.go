package console

import (
	"context"
	"io"
	"net/http"
	"sync"
)

// handlerTransport is an http.RoundTripper that serves each request with an
// in-process http.Handler: the console calls the hub's REST API without a
// socket or TLS, and every call still goes through the API's own routing and
// authorization. Responses stream (the telemetry event stream is long-lived):
// RoundTrip returns as soon as the handler has written its header, and
// closing the body cancels the handler's context.
type handlerTransport struct {
	h http.Handler
}

// RoundTrip implements http.RoundTripper.
func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	r := req.Clone(ctx)
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.RequestURI = r.URL.RequestURI()
	r.RemoteAddr = "console"
	pr, pw := io.Pipe()
	w := &pipeWriter{header: http.Header{}, pw: pw, ready: make(chan struct{})}
	go func() {
		defer func() {
			w.writeHeader(http.StatusOK) // a handler that wrote nothing answered 200
			pw.Close()
		}()
		t.h.ServeHTTP(w, r)
	}()
	select {
	case <-w.ready:
	case <-ctx.Done():
		cancel()
		pr.CloseWithError(ctx.Err())
		return nil, ctx.Err()
	}
	return &http.Response{
		Status:     http.StatusText(w.status),
		StatusCode: w.status,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  w.sent,
		Body:    &cancelBody{ReadCloser: pr, cancel: cancel},
		Request: req,
	}, nil
}

// pipeWriter is the handler's http.ResponseWriter: the header is handed to
// RoundTrip once, the body goes through the pipe.
type pipeWriter struct {
	header http.Header
	sent   http.Header
	status int
	pw     *io.PipeWriter
	once   sync.Once
	ready  chan struct{}
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(code int) { w.writeHeader(code) }

func (w *pipeWriter) writeHeader(code int) {
	w.once.Do(func() {
		w.status = code
		w.sent = w.header.Clone()
		close(w.ready)
	})
}

func (w *pipeWriter) Write(p []byte) (int, error) {
	w.writeHeader(http.StatusOK)
	return w.pw.Write(p)
}

// Flush lets http.ResponseController flush (the event stream does); the pipe has no buffer.
func (w *pipeWriter) Flush() { w.writeHeader(http.StatusOK) }

// cancelBody ends the handler when the caller is done with the response.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	b.cancel()
	return b.ReadCloser.Close()
}
