// The Go SDK's side of Herald's interop matrix (see ../README.md): a producer and a subscriber
// written the way sdk-go's documentation shows, printing what the SDK gives them.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
)

type attribute struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value"`
}

type data struct {
	ContentType string          `json:"contenttype"`
	JSON        json.RawMessage `json:"json"`
	Base64      string          `json:"base64"`
}

type planned struct {
	Attributes []attribute `json:"attributes"`
	Data       *data       `json:"data"`
}

type plan struct {
	Events []planned `json:"events"`
}

var out = bufio.NewWriter(os.Stdout)

func main() {
	if len(os.Args) != 5 && len(os.Args) != 4 {
		fail("usage: interop produce URL MODE PLAN | interop subscribe PORT REPLY")
	}
	switch os.Args[1] {
	case "produce":
		produce(os.Args[2], os.Args[3], os.Args[4])
	case "subscribe":
		subscribe(os.Args[2], os.Args[3])
	default:
		fail("unknown command " + os.Args[1])
	}
}

func fail(why string) {
	fmt.Fprintln(os.Stderr, why)
	os.Exit(2)
}

func readPlan(path string) plan {
	raw, err := os.ReadFile(path)
	if err != nil {
		fail(err.Error())
	}
	var p plan
	if err := json.Unmarshal(raw, &p); err != nil {
		fail(err.Error())
	}
	return p
}

// build turns a planned event into an event.Event, each value in the SDK's own type.
func build(p planned, id string) event.Event {
	e := event.New()
	for _, a := range p.Attributes {
		var text string
		_ = json.Unmarshal(a.Value, &text)
		var value interface{}
		switch a.Type {
		case "string":
			value = text
		case "boolean":
			var b bool
			_ = json.Unmarshal(a.Value, &b)
			value = b
		case "integer":
			var i int32
			_ = json.Unmarshal(a.Value, &i)
			value = i
		case "binary":
			bytes, err := base64.StdEncoding.DecodeString(text)
			if err != nil {
				fail(err.Error())
			}
			value = bytes
		case "uri":
			u, err := url.Parse(text)
			if err != nil {
				fail(err.Error())
			}
			value = types.URI{URL: *u}
		case "urireference":
			u, err := url.Parse(text)
			if err != nil {
				fail(err.Error())
			}
			value = types.URIRef{URL: *u}
		case "timestamp":
			t, err := time.Parse(time.RFC3339Nano, text)
			if err != nil {
				fail(err.Error())
			}
			value = t
		default:
			fail("unknown type " + a.Type)
		}
		switch a.Name {
		case "id":
			e.SetID(text)
		case "source":
			e.SetSource(text)
		case "type":
			e.SetType(text)
		case "subject":
			e.SetSubject(text)
		case "time":
			e.SetTime(value.(time.Time))
		case "dataschema":
			e.SetDataSchema(text)
		default:
			e.SetExtension(a.Name, value)
		}
	}
	if id != "" {
		e.SetID(id)
	}
	if err := e.Validate(); err != nil {
		fail(err.Error())
	}
	if d := p.Data; d != nil {
		var err error
		if d.JSON != nil {
			err = e.SetData(d.ContentType, []byte(d.JSON))
		} else {
			var bytes []byte
			if bytes, err = base64.StdEncoding.DecodeString(d.Base64); err == nil {
				err = e.SetData(d.ContentType, bytes)
			}
		}
		if err != nil {
			fail(err.Error())
		}
	}
	return e
}

func produce(target, mode, planPath string) {
	p := readPlan(planPath)
	var events []event.Event
	for _, planned := range p.Events {
		events = append(events, build(planned, ""))
	}
	send := func(req *http.Request, ids []string) {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fail(err.Error())
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		line, _ := json.Marshal(map[string]interface{}{"ids": ids, "status": resp.StatusCode, "body": string(body)})
		fmt.Fprintln(out, string(line))
		out.Flush()
		if resp.StatusCode/100 != 2 {
			os.Exit(1)
		}
	}
	ctx := context.Background()
	switch mode {
	case "batch":
		req, err := cehttp.NewHTTPRequestFromEvents(ctx, target, events)
		if err != nil {
			fail(err.Error())
		}
		var ids []string
		for _, e := range events {
			ids = append(ids, e.ID())
		}
		send(req, ids)
	case "binary", "structured":
		if mode == "binary" {
			ctx = binding.WithForceBinary(ctx)
		} else {
			ctx = binding.WithForceStructured(ctx)
		}
		for _, e := range events {
			req, err := cehttp.NewHTTPRequestFromEvent(ctx, target, e)
			if err != nil {
				fail(err.Error())
			}
			send(req, []string{e.ID()})
		}
	default:
		fail("unknown mode " + mode)
	}
}

// canonical gives every attribute in its canonical string form (types.Format).
func canonical(e *event.Event) map[string]string {
	attrs := map[string]string{
		"specversion": e.SpecVersion(),
		"id":          e.ID(),
		"source":      e.Source(),
		"type":        e.Type(),
	}
	if e.Subject() != "" {
		attrs["subject"] = e.Subject()
	}
	if !e.Time().IsZero() {
		attrs["time"], _ = types.Format(e.Time())
	}
	if e.DataSchema() != "" {
		attrs["dataschema"] = e.DataSchema()
	}
	if e.DataContentType() != "" {
		attrs["datacontenttype"] = e.DataContentType()
	}
	for name, value := range e.Extensions() {
		text, err := types.Format(value)
		if err != nil {
			text = fmt.Sprintf("unformattable %T: %v", value, err)
		}
		attrs[name] = text
	}
	return attrs
}

func subscribe(port, replyPath string) {
	reply := readPlan(replyPath).Events[0]
	records := make(chan []byte, 64)
	go func() {
		for line := range records {
			out.Write(line)
			out.WriteString("\n")
			out.Flush()
		}
	}()
	handler := func(w http.ResponseWriter, r *http.Request) {
		mode := strings.TrimPrefix(r.URL.Path, "/")
		record := map[string]interface{}{"path": r.URL.Path}
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			record["error"] = err.Error()
			line, _ := json.Marshal(record)
			records <- line
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		record["events"] = []interface{}{map[string]interface{}{
			"attributes":  canonical(e),
			"data_base64": base64.StdEncoding.EncodeToString(e.Data()),
		}}
		line, _ := json.Marshal(record)
		records <- line
		name := "go-" + mode
		if via, ok := e.Extensions()["replyvia"]; ok && via == name {
			answer := build(reply, "reply-"+e.ID()+"-"+name)
			ctx := binding.WithForceBinary(r.Context())
			if mode == "structured" {
				ctx = binding.WithForceStructured(r.Context())
			}
			if err := cehttp.WriteResponseWriter(ctx, binding.ToMessage(&answer), http.StatusOK, w); err != nil {
				fmt.Fprintln(os.Stderr, "reply:", err)
			}
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
	fmt.Fprintln(os.Stderr, "listening on", port)
	if err := http.ListenAndServe("127.0.0.1:"+port, http.HandlerFunc(handler)); err != nil {
		fail(err.Error())
	}
}
