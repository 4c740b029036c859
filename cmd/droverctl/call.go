package main

import (
	"context"
	"fmt"
	"io"

	"github.com/drover-iot/drover/internal/serviceclient"
)

// The plumbing every hub command shares: connect, bound the call by
// --timeout, wrap a failure with what was being done, print the result as
// JSON or as text. Commands keep only what is their own: their flags, the
// request and the renderer.

// connect builds the service client and a context bounded by --timeout; the
// caller calls cancel when the hub work is done. Use it where a command
// keeps the client after the timed call (job --wait); fetch otherwise.
func (a *app) connect(ctx context.Context) (*serviceclient.Client, context.Context, context.CancelFunc, error) {
	c, err := a.client()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := a.withTimeout(ctx)
	return c, ctx, cancel, nil
}

// fetch connects to the hub and runs get under --timeout. get's error is
// wrapped with what, naming --timeout when that is why it failed; an error
// get wraps itself should apply cause to what it wraps for the same reason.
func fetch[T any](ctx context.Context, a *app, what string, get func(context.Context, *serviceclient.Client) (T, error)) (T, error) {
	c, ctx, cancel, err := a.connect(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	defer cancel()
	v, err := get(ctx, c)
	if err != nil {
		var zero T
		return zero, fail(ctx, what, err)
	}
	return v, nil
}

// emit prints v: indented JSON with -o json, else through render.
func emit[T any](a *app, v T, render func(io.Writer, T) error) error {
	if a.wantJSON() {
		return writeJSON(a.stdout, v)
	}
	return render(a.stdout, v)
}

// show is the whole of a command that reads one thing and prints it.
func show[T any](ctx context.Context, a *app, what string, get func(context.Context, *serviceclient.Client) (T, error), render func(io.Writer, T) error) error {
	v, err := fetch(ctx, a, what, get)
	if err != nil {
		return err
	}
	return emit(a, v, render)
}

// remove runs del and confirms it: {"<key>": id, "deleted": true} with -o
// json, else "deleted <noun> <id>".
func (a *app) remove(ctx context.Context, noun, key, id string, del func(context.Context, *serviceclient.Client) error) error {
	if _, err := fetch(ctx, a, "delete "+noun+" "+id, func(ctx context.Context, c *serviceclient.Client) (struct{}, error) {
		return struct{}{}, del(ctx, c)
	}); err != nil {
		return err
	}
	if a.wantJSON() {
		return writeJSON(a.stdout, map[string]any{key: id, "deleted": true})
	}
	_, err := fmt.Fprintf(a.stdout, "deleted %s %s\n", noun, id)
	return err
}

// renderKeys prints a symmetric key pair (secret).
func renderKeys(w io.Writer, k *serviceclient.SymmetricKey) error {
	return writeKV(w, []kv{{"Primary key", k.PrimaryKey}, {"Secondary key", k.SecondaryKey}})
}
