package main

// The interceptor wraps the simulator's whole HTTP handler. For each SOAP
// request it decodes the method name and target before dispatch, so it can
// apply fault-injection rules and stand-ins to any object, including objects
// created after startup (simulator.Map.Put wrappers only reach objects that
// already exist). Everything else is passed to the simulator unchanged,
// behind a panic guard that turns handler panics into SOAP faults.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// rule is one fault-injection rule, as POSTed to /_vcsim/inject.
type rule struct {
	Method  string `json:"method"`
	Moref   string `json:"moref,omitempty"`
	Mode    string `json:"mode"`
	Fault   string `json:"fault,omitempty"`
	Message string `json:"message,omitempty"`
	DelayMs int    `json:"delayMs,omitempty"`
	// Count is how many calls the rule applies to; 0 means 1, a negative
	// value means every call until the rules are cleared.
	Count int `json:"count,omitempty"`
	Hits  int `json:"hits"`
}

func (r *rule) matches(m *simulator.Method) bool {
	if r.Method != m.Name {
		return false
	}
	if r.Moref == "" {
		return true
	}
	return r.Moref == m.This.Value || r.Moref == m.This.Type+":"+m.This.Value
}

// interceptor is the launcher's http.Handler.
type interceptor struct {
	next   http.Handler
	public *url.URL

	mu       sync.Mutex
	rules    []*rule
	sessions map[string]bool

	exports *exportLeases
}

func newInterceptor(next http.Handler, public *url.URL) *interceptor {
	return &interceptor{
		next:     next,
		public:   public,
		sessions: map[string]bool{},
		exports:  newExportLeases(),
	}
}

func isSDKPath(p string) bool {
	return p == "/sdk" || p == "/sdk/vimService"
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ServeHTTP serves the simulator port.
func (ic *interceptor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/_vcsim/"):
		ic.controlHandler().ServeHTTP(w, r)
	case strings.HasPrefix(r.URL.Path, exportPrefix):
		ic.exports.serve(w, r)
	case strings.HasPrefix(r.URL.Path, "/folder/"):
		if ic.injectHTTP(w, r) {
			return
		}
		ic.guarded(w, r, nil, nil)
	case isSDKPath(r.URL.Path) && r.Method == http.MethodPost:
		body, err := ioutil.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ic.dispatch(w, r, body, true)
	default:
		ic.guarded(w, r, nil, nil)
	}
}

// call is one decoded SOAP request in flight.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	body   []byte
	method *simulator.Method
}

// dispatch serves one SOAP request: injection rules (when inject is true),
// then stand-ins, then the simulator itself.
func (ic *interceptor) dispatch(w http.ResponseWriter, r *http.Request, body []byte, inject bool) {
	method, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		// Let the simulator produce its own fault for undecodable requests.
		ic.guarded(w, r, nil, body)
		return
	}
	c := &call{w: w, r: r, body: body, method: method}

	if inject {
		if rl := ic.takeRule(method); rl != nil {
			if ic.applyRule(c, rl) {
				return
			}
		}
	}

	if guard, ok := guards[method.Name]; ok {
		if fault, msg := guard(method); fault != nil && ic.touchSession(r) {
			task := newTask(method.This, method.Name)
			startTask(task)
			finishTask(task, nil, fault, msg)
			writeTaskResult(w, method.Name, task.Self)
			return
		}
	}

	if standIn, ok := standIns[method.Name]; ok {
		if ic.standInApplies(method) {
			if !ic.touchSession(r) {
				writeFault(w, &types.NotAuthenticated{
					NoPermission: types.NoPermission{Object: method.This, PrivilegeId: "System.View"},
				}, "")
				return
			}
			ic.guardedFunc(w, method, func(tw http.ResponseWriter) {
				c.w = tw
				standIn(ic, c)
			})
			return
		}
	}

	// volumes.go: vcsim cannot hold raw device mappings; the launcher keeps them
	ic.rdmAware(method, &body, func() { ic.guarded(w, r, method, body) })
	if method.Name == "RelocateVM_Task" {
		syncHostVMs(method.This) // standins.go: vcsim leaves the hosts' vm lists stale
	}
}

// guarded passes a request to the simulator. A handler panic becomes a
// SystemError fault (an empty result for Fetch) instead of a dropped
// connection. Session cookies issued by the simulator are recorded so that
// /_vcsim/expire-sessions can end them.
func (ic *interceptor) guarded(w http.ResponseWriter, r *http.Request, method *simulator.Method, body []byte) {
	if body != nil {
		r.Body = ioutil.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	ic.guardedFunc(w, method, func(tw http.ResponseWriter) { ic.next.ServeHTTP(tw, r) })
	for _, c := range w.Header()["Set-Cookie"] {
		if strings.HasPrefix(c, soap.SessionCookieName+"=") {
			v := strings.TrimPrefix(c, soap.SessionCookieName+"=")
			if i := strings.Index(v, ";"); i >= 0 {
				v = v[:i]
			}
			ic.mu.Lock()
			ic.sessions[v] = true
			ic.mu.Unlock()
		}
	}
}

// headerTracker remembers whether a response has started.
type headerTracker struct {
	http.ResponseWriter
	wrote bool
}

func (h *headerTracker) WriteHeader(code int) {
	h.wrote = true
	h.ResponseWriter.WriteHeader(code)
}

func (h *headerTracker) Write(b []byte) (int, error) {
	h.wrote = true
	return h.ResponseWriter.Write(b)
}

func (ic *interceptor) guardedFunc(w http.ResponseWriter, m *simulator.Method, f func(http.ResponseWriter)) {
	tracker := &headerTracker{ResponseWriter: w}
	started := time.Now()
	method := ""
	if m != nil {
		method = m.Name
	}
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if p == http.ErrAbortHandler {
			panic(p)
		}
		if method == "Fetch" {
			log.Printf("recovered panic in Fetch (unset property?): %v", p)
		} else {
			log.Printf("recovered panic in %s: %v\n%s", method, p, debug.Stack())
		}
		reason := fmt.Sprintf("vcsim handler panic in %s: %v", method, p)
		if m != nil {
			recentTasks.failStuck(m.This, started, reason)
		}
		if tracker.wrote {
			return // too late for a fault; net/http closes the connection
		}
		if method == "Fetch" {
			// vcsim 0.24.2 indexes an empty MissingSet for unset properties:
			// answer like a real server, with no returnval.
			writeEnvelope(w, http.StatusOK, func(out *bytes.Buffer) error {
				fmt.Fprintf(out, `<FetchResponse xmlns="%s"></FetchResponse>`, vimNamespace)
				return nil
			})
			return
		}
		writeSystemError(w, reason)
	}()
	f(tracker)
}

// touchSession reports whether the request carries a live session, and
// refreshes that session's idle timer, by replaying a cheap authenticated
// call (CurrentTime) through the simulator with the request's cookies.
func (ic *interceptor) touchSession(r *http.Request) bool {
	body := envelopeOpen + `<CurrentTime xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this></CurrentTime>` + envelopeClose
	rec := ic.replay(r, []byte(body))
	return rec.Code == http.StatusOK
}

// replay runs a SOAP body through the simulator (not through injection)
// with the cookies and remote address of r, and returns the recording.
func (ic *interceptor) replay(r *http.Request, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, r.URL.Path, bytes.NewReader(body))
	req.RemoteAddr = r.RemoteAddr
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	for _, c := range r.Cookies() {
		req.AddCookie(c)
	}
	if ua := r.UserAgent(); ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	rec := httptest.NewRecorder()
	ic.dispatch(rec, req, body, false)
	return rec
}

// takeRule returns the first rule matching m, consuming one use of it.
func (ic *interceptor) takeRule(m *simulator.Method) *rule {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	for i, rl := range ic.rules {
		if !rl.matches(m) {
			continue
		}
		rl.Hits++
		if rl.Count > 0 {
			rl.Count--
			if rl.Count == 0 {
				ic.rules = append(ic.rules[:i], ic.rules[i+1:]...)
			}
		}
		cp := *rl
		return &cp
	}
	return nil
}

// newFault instantiates a vim fault by type name, filling its required
// managed object references with the call's target.
func newFault(name string, this types.ManagedObjectReference) (types.BaseMethodFault, error) {
	t, ok := types.TypeFunc()(name)
	if !ok {
		return nil, fmt.Errorf("unknown vim type %q", name)
	}
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%q is not a fault type", name)
	}
	v := reflect.New(t)
	f, ok := v.Interface().(types.BaseMethodFault)
	if !ok {
		return nil, fmt.Errorf("%q is not a vim fault type", name)
	}
	fillFault(v.Elem(), this)
	return f, nil
}

var morType = reflect.TypeOf(types.ManagedObjectReference{})

// fillFault sets the zero-valued required fields pyvmomi checks on common
// faults: managed object references point at the call's target, and
// InvalidPowerState gets an existing state.
func fillFault(v reflect.Value, this types.ManagedObjectReference) {
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		ft := v.Type().Field(i)
		switch {
		case ft.Type == morType:
			if f.Interface().(types.ManagedObjectReference).Value != "" || this.Value == "" {
				continue
			}
			if ft.Name == "Task" {
				// TaskInProgress.task must be a Task moref for pyvmomi.
				f.Set(reflect.ValueOf(types.ManagedObjectReference{Type: "Task", Value: "task-injected"}))
			} else {
				f.Set(reflect.ValueOf(this))
			}
		case ft.Anonymous && f.Kind() == reflect.Struct:
			fillFault(f, this)
		}
	}
	if ips, ok := v.Addr().Interface().(*types.InvalidPowerState); ok && ips.ExistingState == "" {
		ips.ExistingState = currentPowerState(this)
	}
}

// currentPowerState returns the power state of a VM moref ("poweredOff"
// when it is not a known VM).
func currentPowerState(ref types.ManagedObjectReference) types.VirtualMachinePowerState {
	if vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine); ok {
		var st types.VirtualMachinePowerState
		simulator.Map.WithLock(vm, func() { st = vm.Runtime.PowerState })
		return st
	}
	return types.VirtualMachinePowerStatePoweredOff
}

// applyRule applies an injection rule; false means "serve the call normally".
func (ic *interceptor) applyRule(c *call, rl *rule) bool {
	m := c.method
	msg := rl.Message
	switch rl.Mode {
	case "fault":
		f, err := newFault(rl.Fault, m.This)
		if err != nil {
			writeSystemError(c.w, "vcsim inject: "+err.Error())
			return true
		}
		if msg == "" {
			msg = "injected " + rl.Fault
		}
		writeFault(c.w, f, msg)
		return true
	case "taskfault":
		if !ic.touchSession(c.r) {
			return false // the simulator answers NotAuthenticated
		}
		f, err := newFault(rl.Fault, m.This)
		if err != nil {
			writeSystemError(c.w, "vcsim inject: "+err.Error())
			return true
		}
		if msg == "" {
			msg = "injected " + rl.Fault
		}
		task := newTask(m.This, m.Name)
		startTask(task)
		finishTask(task, nil, f, msg)
		writeTaskResult(c.w, m.Name, task.Self)
		return true
	case "delay":
		d := time.Duration(rl.DelayMs) * time.Millisecond
		if !strings.HasSuffix(m.Name, "_Task") {
			// Not a task method: answer late.
			time.Sleep(d)
			return false
		}
		if !ic.touchSession(c.r) {
			return false
		}
		task := newTask(m.This, m.Name)
		startTask(task)
		pending := delayedTasks.add(task) // standins.go: CancelTask may end it first
		// The replay runs after this handler returns: keep a copy of the
		// request (cookies, remote address) rather than the server's own.
		r := c.r.Clone(context.Background())
		body := c.body
		go func() {
			select {
			case <-time.After(d):
			case <-pending.cancelled:
			}
			if !delayedTasks.begin(task) {
				return // cancelled: the real method never runs
			}
			res, fault, fmsg := ic.runForTask(r, body)
			finishTask(task, res, fault, fmsg)
		}()
		writeTaskResult(c.w, m.Name, task.Self)
		return true
	}
	writeSystemError(c.w, "vcsim inject: unknown mode "+rl.Mode)
	return true
}

// runForTask replays the real call and returns what its task (or the call
// itself) produced.
func (ic *interceptor) runForTask(r *http.Request, body []byte) (types.AnyType, types.BaseMethodFault, string) {
	rec := ic.replay(r, body)
	resp, err := decodeResponse(rec.Body.Bytes())
	if err != nil {
		return nil, &types.SystemError{Reason: "decoding replayed response: " + err.Error()}, err.Error()
	}
	if resp.fault != nil {
		return nil, resp.fault, resp.faultMsg
	}
	if resp.returnval == nil || resp.returnval.Type != "Task" {
		if resp.returnval != nil {
			return *resp.returnval, nil, ""
		}
		return nil, nil, ""
	}
	inner, ok := simulator.Map.Get(*resp.returnval).(*simulator.Task)
	if !ok {
		return nil, &types.SystemError{Reason: "replayed task vanished"}, "replayed task vanished"
	}
	// Tasks of vcsim 0.24.2 complete before the call returns; wait briefly
	// in case a stand-in runs one asynchronously.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var info types.TaskInfo
		simulator.Map.WithLock(inner, func() { info = inner.Info })
		if info.State == types.TaskInfoStateSuccess {
			return info.Result, nil, ""
		}
		if info.State == types.TaskInfoStateError {
			if info.Error != nil {
				return nil, info.Error.Fault, info.Error.LocalizedMessage
			}
			return nil, &types.SystemError{Reason: "task failed"}, "task failed"
		}
		if time.Now().After(deadline) {
			return nil, &types.SystemError{Reason: "replayed task did not finish"}, "replayed task did not finish"
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newTask creates a queued Task for method on this (entity fixed by the
// registry hook when this is not a ManagedEntity).
func newTask(this types.ManagedObjectReference, method string) *simulator.Task {
	base := strings.TrimSuffix(method, "_Task")
	return simulator.CreateTask(this, base+"Task", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, nil
	})
}

func startTask(task *simulator.Task) {
	simulator.Map.WithLock(task, func() {
		simulator.Map.Update(task, []types.PropertyChange{
			{Name: "info.startTime", Val: time.Now()},
			{Name: "info.state", Val: types.TaskInfoStateRunning},
		})
	})
}

func finishTask(task *simulator.Task, res types.AnyType, fault types.BaseMethodFault, msg string) {
	state := types.TaskInfoStateSuccess
	var lf interface{}
	if fault != nil {
		state = types.TaskInfoStateError
		if msg == "" {
			msg = faultKind(fault)
		}
		lf = types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg}
	}
	simulator.Map.WithLock(task, func() {
		simulator.Map.Update(task, []types.PropertyChange{
			{Name: "info.completeTime", Val: time.Now()},
			{Name: "info.state", Val: state},
			{Name: "info.result", Val: res},
			{Name: "info.error", Val: lf},
		})
	})
}

// expireSessions terminates every session the simulator has issued.
func (ic *interceptor) expireSessions() int {
	ic.mu.Lock()
	keys := make([]string, 0, len(ic.sessions))
	for k := range ic.sessions {
		keys = append(keys, k)
	}
	ic.sessions = map[string]bool{}
	ic.mu.Unlock()

	sm := simulator.Map.SessionManager()
	ctx := &simulator.Context{
		Map: simulator.Map,
		Session: &simulator.Session{
			UserSession: types.UserSession{Key: "vcsim-launcher-expire-sessions"},
			Registry:    simulator.NewRegistry(),
		},
	}
	n := 0
	for _, k := range keys {
		res := sm.TerminateSession(ctx, &types.TerminateSession{SessionId: []string{k}})
		if res.Fault() == nil {
			n++
		}
	}
	return n
}

// controlHandler serves /_vcsim/* (loopback clients only).
func (ic *interceptor) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/_vcsim/inject", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			var rl rule
			if err := json.NewDecoder(r.Body).Decode(&rl); err != nil {
				http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
				return
			}
			if err := validateRule(&rl); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			ic.mu.Lock()
			ic.rules = append(ic.rules, &rl)
			ic.mu.Unlock()
			writeJSON(w, rl)
		case http.MethodDelete:
			ic.mu.Lock()
			n := len(ic.rules)
			ic.rules = nil
			ic.mu.Unlock()
			writeJSON(w, map[string]int{"cleared": n})
		case http.MethodGet:
			ic.mu.Lock()
			rules := append([]*rule(nil), ic.rules...)
			ic.mu.Unlock()
			writeJSON(w, rules)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
	volumeControls(mux) // volumes.go: /_vcsim/iscsi-targets
	mux.HandleFunc("/_vcsim/expire-sessions", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		writeJSON(w, map[string]int{"expired": ic.expireSessions()})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopback(r.RemoteAddr) {
			http.Error(w, "loopback clients only", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// datastoreHTTPPrefix names the pseudo-methods of datastore HTTP access
// (/folder/...) for injection rules: "DatastoreHTTP.PUT", "DatastoreHTTP.GET"...
const datastoreHTTPPrefix = "DatastoreHTTP."

// injectHTTP applies injection rules to datastore HTTP transfers. The rule's
// moref, when given, is matched against the dsName query parameter. "fault"
// and "taskfault" answer HTTP 500 with the message (nothing is written);
// "delay" answers delayMs late. It reports whether the request was answered.
func (ic *interceptor) injectHTTP(w http.ResponseWriter, r *http.Request) bool {
	m := &simulator.Method{
		Name: datastoreHTTPPrefix + r.Method,
		This: types.ManagedObjectReference{Type: "Datastore", Value: r.URL.Query().Get("dsName")},
	}
	rl := ic.takeRule(m)
	if rl == nil {
		return false
	}
	if rl.Mode == "delay" {
		time.Sleep(time.Duration(rl.DelayMs) * time.Millisecond)
		return false
	}
	msg := rl.Message
	if msg == "" {
		msg = "injected datastore HTTP failure"
	}
	_, _ = io.Copy(ioutil.Discard, r.Body)
	http.Error(w, msg, http.StatusInternalServerError)
	return true
}

func validateRule(rl *rule) error {
	if rl.Method == "" {
		return fmt.Errorf("method is required")
	}
	httpRule := strings.HasPrefix(rl.Method, datastoreHTTPPrefix)
	switch rl.Mode {
	case "fault", "taskfault":
		if httpRule && rl.Fault == "" {
			break
		}
		if _, err := newFault(rl.Fault, types.ManagedObjectReference{}); err != nil {
			return err
		}
	case "delay":
		if rl.DelayMs <= 0 {
			return fmt.Errorf("delay mode needs delayMs > 0")
		}
	default:
		return fmt.Errorf("mode must be fault, taskfault or delay")
	}
	if rl.Count == 0 {
		rl.Count = 1
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// taskEntityHook is a registry handler that fixes Task.Info.Entity for tasks
// whose target is not a ManagedEntity (snapshots, FileManager,
// VirtualDiskManager, HostDatastoreBrowser): pyvmomi refuses to deserialize
// such a TaskInfo. A snapshot task points at the snapshot's VM; others get no
// entity.
type taskEntityHook struct{}

func (taskEntityHook) Reference() types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "VcsimLauncherHook", Value: "task-entity"}
}

func (taskEntityHook) PutObject(obj mo.Reference) {
	task, ok := obj.(*simulator.Task)
	if !ok || task.Info.Entity == nil {
		return
	}
	ref := *task.Info.Entity
	recentTasks.add(task, ref)
	target := simulator.Map.Get(ref)
	if _, ok := target.(mo.Entity); ok {
		return
	}
	if snap, ok := target.(*simulator.VirtualMachineSnapshot); ok {
		vm := snap.Vm
		task.Info.Entity = &vm
		task.Info.EntityName = vm.Value
		if e, ok := simulator.Map.Get(vm).(mo.Entity); ok {
			task.Info.EntityName = e.Entity().Name
		}
		return
	}
	task.Info.Entity = nil
	task.Info.EntityName = ""
}

func (taskEntityHook) UpdateObject(mo.Reference, []types.PropertyChange) {}

func (taskEntityHook) RemoveObject(types.ManagedObjectReference) {}

func installRegistryHooks() {
	simulator.Map.AddHandler(taskEntityHook{})
}

// taskRecord remembers which object a task was created for.
type taskRecord struct {
	task    *simulator.Task
	target  types.ManagedObjectReference
	created time.Time
}

// taskLog keeps the tasks of the last minute so that a handler panic can end
// the tasks it left `running` (vcsim runs tasks inside the SOAP call).
type taskLog struct {
	mu      sync.Mutex
	records []taskRecord
}

var recentTasks = &taskLog{}

func (l *taskLog) add(task *simulator.Task, target types.ManagedObjectReference) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	keep := l.records[:0]
	for _, r := range l.records {
		if now.Sub(r.created) < time.Minute {
			keep = append(keep, r)
		}
	}
	l.records = append(keep, taskRecord{task: task, target: target, created: now})
}

// failStuck ends in SystemError every task created for target since start
// that is still queued or running.
func (l *taskLog) failStuck(target types.ManagedObjectReference, since time.Time, reason string) {
	l.mu.Lock()
	var stuck []*simulator.Task
	for _, r := range l.records {
		if r.target == target && !r.created.Before(since) {
			stuck = append(stuck, r.task)
		}
	}
	l.mu.Unlock()
	for _, t := range stuck {
		var state types.TaskInfoState
		simulator.Map.WithLock(t, func() { state = t.Info.State })
		if state == types.TaskInfoStateRunning || state == types.TaskInfoStateQueued {
			finishTask(t, nil, &types.SystemError{Reason: reason}, reason)
		}
	}
}
