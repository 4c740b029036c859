package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/internal/serviceclient"
)

func (a *app) enrollmentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "enrollment",
		Aliases: []string{"enrollments"},
		Short:   "Manage enrollment groups for zero-touch child provisioning (localhub)",
		Long: `An enrollment group holds a symmetric group key. A gateway given that key
derives each child's device key from the child's id (as DPS symmetric-key
groups do) and the hub registers the child under the group's parent on its
first connection.`,
	}
	cmd.AddCommand(a.enrollmentCreateCmd(), a.enrollmentShowCmd(), a.enrollmentListCmd(),
		a.enrollmentKeysCmd(), a.enrollmentDeleteCmd())
	return cmd
}

func (a *app) enrollmentCreateCmd() *cobra.Command {
	var parent string
	cmd := &cobra.Command{
		Use:   "create NAME --parent GATEWAY_ID",
		Short: "Create an enrollment group and print its primary key (-o json: the whole group)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), a, "create enrollment group "+args[0], func(ctx context.Context, c *serviceclient.Client) (*serviceclient.EnrollmentGroup, error) {
				return c.CreateEnrollmentGroup(ctx, serviceclient.EnrollmentGroup{
					EnrollmentGroupID:  args[0],
					ParentDeviceID:     parent,
					ProvisioningStatus: serviceclient.StatusEnabled,
				})
			}, func(w io.Writer, g *serviceclient.EnrollmentGroup) error {
				if g.Attestation.SymmetricKey == nil || g.Attestation.SymmetricKey.PrimaryKey == "" {
					return fmt.Errorf("create enrollment group %s: the hub returned no key", args[0])
				}
				_, err := fmt.Fprintln(w, g.Attestation.SymmetricKey.PrimaryKey)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&parent, "parent", "", "edge device `GATEWAY_ID` whose children enroll through this group")
	_ = cmd.MarkFlagRequired("parent")
	return cmd
}

func (a *app) enrollmentShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show an enrollment group (keys: see 'enrollment keys')",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(cmd.Context(), a, "show enrollment group "+args[0], func(ctx context.Context, c *serviceclient.Client) (*serviceclient.EnrollmentGroup, error) {
				return c.GetEnrollmentGroup(ctx, args[0])
			}, renderEnrollment)
		},
	}
}

func (a *app) enrollmentListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List enrollment groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(cmd.Context(), a, "list enrollment groups", func(ctx context.Context, c *serviceclient.Client) ([]serviceclient.EnrollmentGroup, error) {
				gs, err := c.ListEnrollmentGroups(ctx)
				if gs == nil {
					gs = []serviceclient.EnrollmentGroup{} // JSON [], not null
				}
				return gs, err
			}, renderEnrollmentList)
		},
	}
}

func (a *app) enrollmentKeysCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keys NAME",
		Short: "Print an enrollment group's keys (secret)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			what := "read keys of enrollment group " + args[0]
			g, err := fetch(cmd.Context(), a, what, func(ctx context.Context, c *serviceclient.Client) (*serviceclient.EnrollmentGroup, error) {
				return c.GetEnrollmentGroup(ctx, args[0])
			})
			if err != nil {
				return err
			}
			k := g.Attestation.SymmetricKey
			if k == nil {
				return fmt.Errorf("%s: attestation %s has no symmetric keys", what, g.Attestation.Type)
			}
			return emit(a, k, renderKeys)
		},
	}
}

func (a *app) enrollmentDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an enrollment group",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.remove(cmd.Context(), "enrollment group", "enrollmentGroupId", args[0], func(ctx context.Context, c *serviceclient.Client) error {
				return c.DeleteEnrollmentGroup(ctx, args[0])
			})
		},
	}
}

// renderEnrollment prints a group as key/value lines; keys are left out.
func renderEnrollment(w io.Writer, g *serviceclient.EnrollmentGroup) error {
	return writeKV(w, []kv{
		{"Enrollment group", g.EnrollmentGroupID},
		{"Parent", g.ParentDeviceID},
		{"Status", g.ProvisioningStatus},
		{"Attestation", g.Attestation.Type},
		{"Created", hubTime(g.CreatedDateTimeUTC)},
		{"Updated", hubTime(g.LastUpdatedDateTimeUTC)},
		{"ETag", g.ETag},
	})
}

func renderEnrollmentList(w io.Writer, gs []serviceclient.EnrollmentGroup) error {
	rows := make([][]string, 0, len(gs))
	for _, g := range gs {
		rows = append(rows, []string{g.EnrollmentGroupID, g.ParentDeviceID, g.ProvisioningStatus, g.Attestation.Type, hubTime(g.CreatedDateTimeUTC)})
	}
	return writeTable(w, []string{"ENROLLMENT GROUP", "PARENT", "STATUS", "ATTESTATION", "CREATED"}, rows)
}
