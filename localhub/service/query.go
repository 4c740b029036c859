package service

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/drover-iot/drover/localhub/query"
)

// maxPage bounds x-ms-max-item-count.
const maxPage = 1000

func (s *Server) query(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Query string `json:"query"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Query == "" {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "query is required")
	}
	if len(in.Query) > 8192 {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "query is longer than 8192 characters")
	}
	q, err := query.Parse(in.Query)
	if err != nil {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "%v", err)
	}
	plan, err := query.Compile(q)
	if err != nil {
		return errf(http.StatusBadRequest, "ArgumentInvalid", "%v", err)
	}
	page := 100
	if v := r.Header.Get("x-ms-max-item-count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return errf(http.StatusBadRequest, "ArgumentInvalid", "x-ms-max-item-count %q: must be a positive number", v)
		}
		page = min(n, maxPage)
	}
	offset := 0
	if c := r.Header.Get("x-ms-continuation"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		n, err2 := strconv.Atoi(string(b))
		if err != nil || err2 != nil || n < 0 {
			return errf(http.StatusBadRequest, "ArgumentInvalid", "x-ms-continuation is not a token this hub issued")
		}
		offset = n
	}
	start := time.Now()
	defer func() { s.metrics.Query(time.Since(start)) }()
	var items []any
	switch plan.Kind {
	case query.KindTwins:
		w.Header().Set("x-ms-item-type", "twin")
		twins, err := s.st.QueryTwins(r.Context(), plan.SQL, plan.Args, page+1, offset)
		if err != nil {
			return err
		}
		for _, t := range twins {
			items = append(items, twinJSON(t))
		}
	case query.KindRows, query.KindDeviceJobs:
		w.Header().Set("x-ms-item-type", plan.Kind.String())
		rows, err := s.st.QueryRows(r.Context(), plan.SQL, plan.Args, page+1, offset)
		if err != nil {
			return err
		}
		for _, row := range rows {
			items = append(items, row)
		}
	default:
		return errors.New("query: unknown plan kind")
	}
	if len(items) > page {
		items = items[:page]
		// Only while more pages exist: the Node SDK loops as long as the header is present.
		w.Header().Set("x-ms-continuation", base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(offset+page))))
	}
	if items == nil {
		items = []any{}
	}
	return writeJSON(w, http.StatusOK, items)
}
