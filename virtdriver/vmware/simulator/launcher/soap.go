package main

// SOAP encoding and decoding helpers for the launcher's own responses
// (injected faults, stand-in results) and for reading back responses of
// calls replayed through the simulator.

import (
	"bytes"
	stdxml "encoding/xml"
	"fmt"
	"net/http"
	"reflect"

	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

const (
	envelopeOpen = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"` +
		` xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"` +
		` xmlns:xsd="http://www.w3.org/2001/XMLSchema"` +
		` xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>`
	envelopeClose = `</soapenv:Body></soapenv:Envelope>`
	vimNamespace  = "urn:vim25"
)

// writeEnvelope writes one SOAP envelope whose body is produced by fill.
func writeEnvelope(w http.ResponseWriter, status int, fill func(*bytes.Buffer) error) {
	var out bytes.Buffer
	out.WriteString(envelopeOpen)
	if err := fill(&out); err != nil {
		http.Error(w, "vcsim launcher: encoding response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	out.WriteString(envelopeClose)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(out.Bytes())
}

// encodeElement encodes v as an element named local in the vim25 namespace,
// with an optional xsi:type attribute.
func encodeElement(out *bytes.Buffer, v interface{}, local string, xsiType string) error {
	e := xml.NewEncoder(out)
	start := xml.StartElement{
		Name: xml.Name{Local: local},
		Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: vimNamespace}},
	}
	if xsiType != "" {
		start.Attr = append(start.Attr, xml.Attr{Name: xml.Name{Local: "xsi:type"}, Value: xsiType})
	}
	if err := e.EncodeElement(v, start); err != nil {
		return err
	}
	return e.Flush()
}

// writeResult writes "<{method}Response>" holding res (a vim25/types
// *Response struct, which carries its own returnval field).
func writeResult(w http.ResponseWriter, method string, res interface{}) {
	writeEnvelope(w, http.StatusOK, func(out *bytes.Buffer) error {
		return encodeElement(out, res, method+"Response", "")
	})
}

// writeTaskResult writes "<{method}Response><returnval type="Task">".
func writeTaskResult(w http.ResponseWriter, method string, task types.ManagedObjectReference) {
	writeEnvelope(w, http.StatusOK, func(out *bytes.Buffer) error {
		fmt.Fprintf(out, `<%sResponse xmlns="%s"><returnval type="%s">`, method, vimNamespace, task.Type)
		_ = stdxml.EscapeText(out, []byte(task.Value))
		fmt.Fprintf(out, `</returnval></%sResponse>`, method)
		return nil
	})
}

// faultKind returns the vim type name of a fault, e.g. "InvalidPowerState".
func faultKind(f types.BaseMethodFault) string {
	return reflect.TypeOf(f).Elem().Name()
}

// writeFault writes a SOAP fault (HTTP 500) carrying fault as its detail.
func writeFault(w http.ResponseWriter, f types.BaseMethodFault, msg string) {
	writeEnvelope(w, http.StatusInternalServerError, func(out *bytes.Buffer) error {
		out.WriteString(`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>`)
		_ = stdxml.EscapeText(out, []byte(msg))
		out.WriteString(`</faultstring><detail>`)
		kind := faultKind(f)
		if err := encodeElement(out, f, kind+"Fault", kind); err != nil {
			return err
		}
		out.WriteString(`</detail></soapenv:Fault>`)
		return nil
	})
}

// writeSystemError writes a SystemError fault with the given reason.
func writeSystemError(w http.ResponseWriter, reason string) {
	writeFault(w, &types.SystemError{Reason: reason}, reason)
}

// replayedResponse is what a SOAP response recorded from the simulator holds.
type replayedResponse struct {
	fault     types.BaseMethodFault
	faultMsg  string
	returnval *types.ManagedObjectReference
}

// decodeResponse reads a recorded SOAP response: either a fault (decoded into
// its vim type) or a response whose returnval may be a managed object reference.
func decodeResponse(data []byte) (*replayedResponse, error) {
	out := &replayedResponse{}

	var body struct {
		Fault *soap.Fault `xml:"http://schemas.xmlsoap.org/soap/envelope/ Fault,omitempty"`
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.TypeFunc = types.TypeFunc()
	if err := dec.Decode(&soap.Envelope{Body: &body}); err != nil {
		return nil, err
	}
	if body.Fault != nil {
		out.faultMsg = body.Fault.String
		if f, ok := body.Fault.Detail.Fault.(types.BaseMethodFault); ok {
			out.fault = f
		} else {
			out.fault = &types.SystemError{Reason: body.Fault.String}
		}
		return out, nil
	}

	// Not a fault: look for <returnval type="...">value</returnval>.
	var generic struct {
		Body struct {
			Inner struct {
				Returnval []struct {
					Type  string `xml:"type,attr"`
					Value string `xml:",chardata"`
				} `xml:"returnval"`
			} `xml:",any"`
		} `xml:"Body"`
	}
	if err := stdxml.Unmarshal(data, &generic); err != nil {
		return nil, err
	}
	rv := generic.Body.Inner.Returnval
	if len(rv) == 1 && rv[0].Type != "" {
		out.returnval = &types.ManagedObjectReference{Type: rv[0].Type, Value: rv[0].Value}
	}
	return out, nil
}
