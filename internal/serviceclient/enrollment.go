package serviceclient

import (
	"context"
	"errors"
	"net/http"
)

// CreateEnrollmentGroup creates or replaces an enrollment group (localhub
// extension, PUT /enrollmentGroups/{id}). An empty attestation becomes a
// symmetric-key attestation whose keys the hub generates; the returned group
// carries them.
func (c *Client) CreateEnrollmentGroup(ctx context.Context, g EnrollmentGroup) (*EnrollmentGroup, error) {
	if g.EnrollmentGroupID == "" {
		return nil, errors.New("create enrollment group: empty id")
	}
	if g.Attestation.Type == "" {
		g.Attestation.Type = AttestationSymmetricKey
	}
	if g.Attestation.Type == AttestationSymmetricKey && g.Attestation.SymmetricKey == nil {
		g.Attestation.SymmetricKey = &SymmetricKey{}
	}
	if g.ProvisioningStatus == "" {
		g.ProvisioningStatus = StatusEnabled
	}
	var out EnrollmentGroup
	if _, err := c.call(ctx, request{method: http.MethodPut, path: []string{"enrollmentGroups", g.EnrollmentGroupID}, body: g}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetEnrollmentGroup reads an enrollment group, keys included.
func (c *Client) GetEnrollmentGroup(ctx context.Context, id string) (*EnrollmentGroup, error) {
	var out EnrollmentGroup
	if _, err := c.call(ctx, request{method: http.MethodGet, path: []string{"enrollmentGroups", id}}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListEnrollmentGroups returns every enrollment group.
func (c *Client) ListEnrollmentGroups(ctx context.Context) ([]EnrollmentGroup, error) {
	var out []EnrollmentGroup
	if _, err := c.call(ctx, request{method: http.MethodGet, path: []string{"enrollmentGroups"}}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteEnrollmentGroup deletes an enrollment group.
func (c *Client) DeleteEnrollmentGroup(ctx context.Context, id string) error {
	_, err := c.call(ctx, request{method: http.MethodDelete, path: []string{"enrollmentGroups", id}, header: http.Header{"If-Match": {ifMatch("")}}}, nil)
	return err
}
