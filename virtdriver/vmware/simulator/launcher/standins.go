package main

// Stand-ins for vSphere methods that govmomi's simulator 0.24.2 does not
// implement. Each one is the launcher's own behaviour, not vcsim's and not
// vCenter's: a test that passes only because of a stand-in proves that the
// request was well-formed, not that vCenter would accept it.

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// standInFunc serves one decoded call; the session is already checked.
type standInFunc func(ic *interceptor, c *call)

var standIns map[string]standInFunc

func init() {
	standIns = map[string]standInFunc{
		"RebootGuest":             rebootGuest,
		"AcquireTicket":           acquireTicket,
		"AcquireMksTicket":        acquireMksTicket,
		"ExtendVirtualDisk_Task":  extendVirtualDisk,
		"MigrateVM_Task":          migrateVM,
		"ExportVm":                exportVM,
		"HttpNfcLeaseGetManifest": leaseGetManifest,
		"HttpNfcLeaseProgress":    leaseProgress,
		"HttpNfcLeaseComplete":    leaseComplete,
		"HttpNfcLeaseAbort":       leaseComplete,
		"CancelTask":              cancelTask,
	}
	for name, f := range volumeStandIns { // volumes.go
		standIns[name] = f
	}
}

// standInApplies limits the lease stand-ins to the launcher's own export
// leases; vcsim keeps serving its ImportVApp leases.
func (ic *interceptor) standInApplies(m *simulator.Method) bool {
	if strings.HasPrefix(m.Name, "HttpNfcLease") {
		return ic.exports.get(m.This.Value) != nil
	}
	return true
}

func notFound(c *call) {
	writeFault(c.w, &types.ManagedObjectNotFound{Obj: c.method.This},
		fmt.Sprintf("managed object not found: %s", c.method.This))
}

// lookupVM returns the target VM and its power state, or writes a fault.
func lookupVM(c *call) (*simulator.VirtualMachine, types.VirtualMachinePowerState, bool) {
	vm, ok := simulator.Map.Get(c.method.This).(*simulator.VirtualMachine)
	if !ok {
		notFound(c)
		return nil, "", false
	}
	var st types.VirtualMachinePowerState
	simulator.Map.WithLock(vm, func() { st = vm.Runtime.PowerState })
	return vm, st, true
}

func invalidPowerState(c *call, want, have types.VirtualMachinePowerState) {
	writeFault(c.w, &types.InvalidPowerState{RequestedState: want, ExistingState: have},
		fmt.Sprintf("The attempted operation cannot be performed in the current state (%s).", have))
}

// STAND-IN: not in vcsim 0.24.2; RebootGuest: the VM stays poweredOn (its
// boot time is refreshed); InvalidPowerState unless it is poweredOn.
func rebootGuest(ic *interceptor, c *call) {
	vm, st, ok := lookupVM(c)
	if !ok {
		return
	}
	if st != types.VirtualMachinePowerStatePoweredOn {
		invalidPowerState(c, types.VirtualMachinePowerStatePoweredOn, st)
		return
	}
	now := time.Now()
	simulator.Map.WithLock(vm, func() {
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "runtime.bootTime", Val: now},
			{Name: "summary.runtime.bootTime", Val: now},
		})
	})
	writeResult(c.w, "RebootGuest", &types.RebootGuestResponse{})
}

// ticketHost returns the host and port a fake console ticket points at (the
// launcher's own listener; nothing serves a console there).
func (ic *interceptor) ticketHost() (string, int32) {
	host := ic.public.Hostname()
	port, _ := strconv.Atoi(ic.public.Port())
	return host, int32(port)
}

func vmCfgFile(vm *simulator.VirtualMachine) string {
	var cfg string
	simulator.Map.WithLock(vm, func() {
		if vm.Config != nil {
			cfg = vm.Config.Files.VmPathName
		}
	})
	return cfg
}

const fakeThumbprint = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33"

// STAND-IN: not in vcsim 0.24.2; AcquireTicket: returns a fake ticket (a
// uuid, the launcher's host and port, the VM's cfgFile, a dummy thumbprint
// and for "webmks" a wss:// URL nothing listens on); InvalidPowerState
// unless the VM is poweredOn.
func acquireTicket(ic *interceptor, c *call) {
	req := c.method.Body.(*types.AcquireTicket)
	vm, st, ok := lookupVM(c)
	if !ok {
		return
	}
	if st != types.VirtualMachinePowerStatePoweredOn {
		invalidPowerState(c, types.VirtualMachinePowerStatePoweredOn, st)
		return
	}
	switch req.TicketType {
	case "mks", "webmks", "device", "guestControl", "guestIntegrity", "webRemoteDevice":
	default:
		writeFault(c.w, &types.InvalidArgument{InvalidProperty: "ticketType"},
			"unsupported ticketType "+req.TicketType)
		return
	}
	host, port := ic.ticketHost()
	t := types.VirtualMachineTicket{
		Ticket:        uuid.New().String(),
		CfgFile:       vmCfgFile(vm),
		Host:          host,
		Port:          port,
		SslThumbprint: fakeThumbprint,
	}
	if req.TicketType == "webmks" {
		t.Url = fmt.Sprintf("wss://%s:%d/ticket/%s", host, port, t.Ticket)
	}
	writeResult(c.w, "AcquireTicket", &types.AcquireTicketResponse{Returnval: t})
}

// STAND-IN: not in vcsim 0.24.2; AcquireMksTicket: a fake MKS ticket like
// acquireTicket's; InvalidPowerState unless the VM is poweredOn.
func acquireMksTicket(ic *interceptor, c *call) {
	vm, st, ok := lookupVM(c)
	if !ok {
		return
	}
	if st != types.VirtualMachinePowerStatePoweredOn {
		invalidPowerState(c, types.VirtualMachinePowerStatePoweredOn, st)
		return
	}
	host, port := ic.ticketHost()
	writeResult(c.w, "AcquireMksTicket", &types.AcquireMksTicketResponse{
		Returnval: types.VirtualMachineMksTicket{
			Ticket:        uuid.New().String(),
			CfgFile:       vmCfgFile(vm),
			Host:          host,
			Port:          port,
			SslThumbprint: fakeThumbprint,
		},
	})
}

// datastoreFile resolves "[ds] dir/file" to a local path.
func datastoreFile(name string) (string, types.BaseMethodFault) {
	var p object.DatastorePath
	if !p.FromString(name) {
		return "", &types.InvalidDatastorePath{DatastorePath: name}
	}
	for _, e := range simulator.Map.All("Datastore") {
		ds, ok := e.(*simulator.Datastore)
		if ok && ds.Name == p.Datastore {
			return filepath.Join(ds.Info.GetDatastoreInfo().Url, p.Path), nil
		}
	}
	return "", &types.InvalidDatastore{Name: p.Datastore}
}

// flatFile returns the -flat.vmdk extent of a .vmdk descriptor path.
func flatFile(local string) string {
	if strings.HasSuffix(local, "-flat.vmdk") || !strings.HasSuffix(local, ".vmdk") {
		return local
	}
	return strings.TrimSuffix(local, ".vmdk") + "-flat.vmdk"
}

// STAND-IN: not in vcsim 0.24.2; ExtendVirtualDisk_Task: truncates the disk's
// -flat.vmdk to newCapacityKb (it refuses to shrink: InvalidArgument) and
// updates nothing else (no VM device capacity, no descriptor). The task runs
// synchronously, like vcsim's, and has no entity.
func extendVirtualDisk(ic *interceptor, c *call) {
	req := c.method.Body.(*types.ExtendVirtualDisk_Task)
	if c.method.This.Type != "VirtualDiskManager" {
		notFound(c)
		return
	}
	run := func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		local, fault := datastoreFile(req.Name)
		if fault != nil {
			return nil, fault
		}
		flat := flatFile(local)
		st, err := os.Stat(flat)
		if err != nil {
			return nil, &types.FileNotFound{FileFault: types.FileFault{File: req.Name}}
		}
		size := req.NewCapacityKb * 1024
		if size < st.Size() {
			return nil, &types.InvalidArgument{InvalidProperty: "newCapacityKb"}
		}
		if err := os.Truncate(flat, size); err != nil {
			return nil, &types.CannotAccessFile{FileFault: types.FileFault{File: req.Name}}
		}
		return nil, nil
	}
	task := simulator.CreateTask(c.method.This, "extendVirtualDiskTask", run)
	writeTaskResult(c.w, "ExtendVirtualDisk_Task", task.Run())
}

// hostPool returns the root resource pool of a host's compute resource.
func hostPool(host types.ManagedObjectReference) *types.ManagedObjectReference {
	h, ok := simulator.Map.Get(host).(*simulator.HostSystem)
	if !ok || h.Parent == nil {
		return nil
	}
	parent := simulator.Map.Get(*h.Parent)
	if parent == nil {
		return nil
	}
	v := reflect.ValueOf(parent)
	for v.Kind() == reflect.Ptr {
		v = v.Elem()
	}
	f := v.FieldByName("ResourcePool")
	if !f.IsValid() || f.IsNil() {
		return nil
	}
	ref := *(f.Interface().(*types.ManagedObjectReference))
	return &ref
}

// STAND-IN: not in vcsim 0.24.2; MigrateVM_Task: translated into
// RelocateVM_Task with the same pool and host (the pool defaults to the
// host's root pool), replayed through vcsim; the state argument, when given,
// must match the VM's power state (InvalidPowerState). The returned task is
// vcsim's relocate task, renamed MigrateVM_Task.
func migrateVM(ic *interceptor, c *call) {
	req := c.method.Body.(*types.MigrateVM_Task)
	_, st, ok := lookupVM(c)
	if !ok {
		return
	}
	if req.State != "" && req.State != st {
		invalidPowerState(c, req.State, st)
		return
	}
	if req.Pool == nil && req.Host == nil {
		writeFault(c.w, &types.InvalidArgument{InvalidProperty: "pool"}, "MigrateVM needs a pool or a host")
		return
	}
	if req.Host != nil {
		if _, ok := simulator.Map.Get(*req.Host).(*simulator.HostSystem); !ok {
			writeFault(c.w, &types.ManagedObjectNotFound{Obj: *req.Host}, "host not found")
			return
		}
	}
	pool := req.Pool
	if pool == nil {
		pool = hostPool(*req.Host)
	}
	if pool != nil {
		if _, ok := simulator.Map.Get(*pool).(*simulator.ResourcePool); !ok {
			writeFault(c.w, &types.ManagedObjectNotFound{Obj: *pool}, "resource pool not found")
			return
		}
	}
	relocate := &types.RelocateVM_Task{
		This:     c.method.This,
		Spec:     types.VirtualMachineRelocateSpec{Pool: pool, Host: req.Host},
		Priority: req.Priority,
	}
	var body bytes.Buffer
	body.WriteString(envelopeOpen)
	if err := encodeElement(&body, relocate, "RelocateVM_Task", ""); err != nil {
		writeSystemError(c.w, "encoding RelocateVM_Task: "+err.Error())
		return
	}
	body.WriteString(envelopeClose)
	rec := ic.replay(c.r, body.Bytes())
	resp, err := decodeResponse(rec.Body.Bytes())
	switch {
	case err != nil:
		writeSystemError(c.w, "decoding RelocateVM_Task response: "+err.Error())
	case resp.fault != nil:
		writeFault(c.w, resp.fault, resp.faultMsg)
	case resp.returnval == nil:
		writeSystemError(c.w, "RelocateVM_Task returned no task")
	default:
		if task, ok := simulator.Map.Get(*resp.returnval).(*simulator.Task); ok {
			simulator.Map.WithLock(task, func() {
				simulator.Map.Update(task, []types.PropertyChange{
					{Name: "info.name", Val: "MigrateVM_Task"},
					{Name: "info.descriptionId", Val: "VirtualMachine.migrate"},
				})
			})
		}
		writeTaskResult(c.w, "MigrateVM_Task", *resp.returnval)
	}
}

// exportPrefix is the URL path under which export leases serve disks.
const exportPrefix = "/nfc-export/"

// exportLease is one ExportVm lease: the simulator object plus the local
// file behind each device URL.
type exportLease struct {
	lease *simulator.HttpNfcLease
	files map[string]string // targetId -> local path
	keys  map[string]string // targetId -> device key
}

type exportLeases struct {
	mu     sync.Mutex
	leases map[string]*exportLease
	n      int64
}

func newExportLeases() *exportLeases {
	return &exportLeases{leases: map[string]*exportLease{}}
}

func (e *exportLeases) get(id string) *exportLease {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leases[id]
}

// serve answers GET/HEAD of an export device URL with the disk's bytes
// (ranges supported); like vcsim's NFC URLs it needs no session.
func (e *exportLeases) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, exportPrefix), "/")
	if len(parts) != 2 {
		http.NotFound(w, r)
		return
	}
	l := e.get(parts[0])
	if l == nil {
		http.NotFound(w, r)
		return
	}
	local, ok := l.files[parts[1]]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	f, err := os.Open(local)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, parts[1], st.ModTime(), f)
}

// STAND-IN: not in vcsim 0.24.2; ExportVm: InvalidPowerState when the VM is
// poweredOn; otherwise a `ready` HttpNfcLease whose deviceUrl entries
// (https://*/nfc-export/<lease>/disk-N.vmdk, "*" to be replaced by the
// client with the server's host:port) GET the raw bytes of each disk's
// -flat.vmdk (not stream-optimized). HttpNfcLeaseGetManifest (sha1 of those
// bytes), HttpNfcLeaseProgress, HttpNfcLeaseComplete and HttpNfcLeaseAbort
// are stand-ins for these leases too.
func exportVM(ic *interceptor, c *call) {
	vm, st, ok := lookupVM(c)
	if !ok {
		return
	}
	if st == types.VirtualMachinePowerStatePoweredOn {
		invalidPowerState(c, types.VirtualMachinePowerStatePoweredOff, st)
		return
	}
	var disks []*types.VirtualDisk
	simulator.Map.WithLock(vm, func() {
		if vm.Config == nil {
			return
		}
		for _, d := range vm.Config.Hardware.Device {
			if disk, ok := d.(*types.VirtualDisk); ok {
				cp := *disk
				disks = append(disks, &cp)
			}
		}
	})

	e := ic.exports
	id := fmt.Sprintf("export-%d", atomic.AddInt64(&e.n, 1))
	l := &exportLease{files: map[string]string{}, keys: map[string]string{}}
	scheme := ic.public.Scheme
	info := &types.HttpNfcLeaseInfo{
		Entity:       vm.Self,
		LeaseTimeout: 30000,
	}
	for i, d := range disks {
		fb, ok := d.Backing.(types.BaseVirtualDeviceFileBackingInfo)
		if !ok {
			continue
		}
		local, fault := datastoreFile(fb.GetVirtualDeviceFileBackingInfo().FileName)
		if fault != nil {
			writeFault(c.w, fault, "cannot resolve disk "+fb.GetVirtualDeviceFileBackingInfo().FileName)
			return
		}
		local = flatFile(local)
		target := fmt.Sprintf("disk-%d.vmdk", i)
		key := fmt.Sprintf("/%s/VirtualDisk%d:%d", vm.Self.Value, d.ControllerKey, unitNumber(d))
		size := int64(0)
		if st, err := os.Stat(local); err == nil {
			size = st.Size()
		}
		l.files[target] = local
		l.keys[target] = key
		info.DeviceUrl = append(info.DeviceUrl, types.HttpNfcLeaseDeviceUrl{
			Key:           key,
			ImportKey:     key,
			Url:           fmt.Sprintf("%s://*%s%s/%s", scheme, exportPrefix, id, target),
			SslThumbprint: fakeThumbprint,
			Disk:          types.NewBool(true),
			TargetId:      target,
			FileSize:      size,
		})
		info.TotalDiskCapacityInKB += d.CapacityInKB
	}

	lease := &simulator.HttpNfcLease{
		HttpNfcLease: mo.HttpNfcLease{
			Info:  info,
			State: types.HttpNfcLeaseStateReady,
		},
	}
	lease.Self = types.ManagedObjectReference{Type: "HttpNfcLease", Value: id}
	info.Lease = lease.Self
	l.lease = lease
	simulator.Map.Put(lease)
	e.mu.Lock()
	e.leases[id] = l
	e.mu.Unlock()

	writeResult(c.w, "ExportVm", &types.ExportVmResponse{Returnval: lease.Self})
}

func unitNumber(d *types.VirtualDisk) int32 {
	if d.UnitNumber == nil {
		return 0
	}
	return *d.UnitNumber
}

// STAND-IN: not in vcsim 0.24.2; HttpNfcLeaseGetManifest: sha1 and size of each
// export device's current bytes.
func leaseGetManifest(ic *interceptor, c *call) {
	l := ic.exports.get(c.method.This.Value)
	var entries []types.HttpNfcLeaseManifestEntry
	for target, local := range l.files {
		h := sha1.New()
		size := int64(0)
		if f, err := os.Open(local); err == nil {
			size, _ = io.Copy(h, f)
			_ = f.Close()
		}
		entries = append(entries, types.HttpNfcLeaseManifestEntry{
			Key:      l.keys[target],
			Sha1:     hex.EncodeToString(h.Sum(nil)),
			Size:     size,
			Disk:     true,
			Capacity: size,
		})
	}
	writeResult(c.w, "HttpNfcLeaseGetManifest", &types.HttpNfcLeaseGetManifestResponse{Returnval: entries})
}

// STAND-IN: not in vcsim 0.24.2 for export leases; HttpNfcLeaseProgress: records the percentage on an export lease.
func leaseProgress(ic *interceptor, c *call) {
	req := c.method.Body.(*types.HttpNfcLeaseProgress)
	l := ic.exports.get(c.method.This.Value)
	simulator.Map.WithLock(l.lease, func() {
		simulator.Map.Update(l.lease, []types.PropertyChange{
			{Name: "transferProgress", Val: req.Percent},
		})
	})
	writeResult(c.w, "HttpNfcLeaseProgress", &types.HttpNfcLeaseProgressResponse{})
}

// STAND-IN: not in vcsim 0.24.2 for export leases; HttpNfcLeaseComplete/Abort: completes (or aborts) an export lease: its
// device URLs stop serving and the lease moref is gone.
func leaseComplete(ic *interceptor, c *call) {
	id := c.method.This.Value
	e := ic.exports
	e.mu.Lock()
	delete(e.leases, id)
	e.mu.Unlock()
	simulator.Map.Remove(c.method.This)
	if c.method.Name == "HttpNfcLeaseAbort" {
		writeResult(c.w, c.method.Name, &types.HttpNfcLeaseAbortResponse{})
		return
	}
	writeResult(c.w, c.method.Name, &types.HttpNfcLeaseCompleteResponse{})
}

// delayedTask is a task the "delay" injection rule keeps running before it
// replays the real method; cancelled is closed when CancelTask ends it.
type delayedTask struct {
	cancelled chan struct{}
}

// delayedTaskSet holds the delayed tasks still waiting for their replay.
type delayedTaskSet struct {
	mu    sync.Mutex
	tasks map[string]*delayedTask
}

var delayedTasks = &delayedTaskSet{tasks: map[string]*delayedTask{}}

// add registers a delayed task (cancelable, as vCenter marks a relocation).
func (s *delayedTaskSet) add(task *simulator.Task) *delayedTask {
	simulator.Map.WithLock(task, func() {
		simulator.Map.Update(task, []types.PropertyChange{{Name: "info.cancelable", Val: true}})
	})
	d := &delayedTask{cancelled: make(chan struct{})}
	s.mu.Lock()
	s.tasks[task.Self.Value] = d
	s.mu.Unlock()
	return d
}

// begin reports whether the delayed task may replay its method (false: it was
// cancelled); the task leaves the set, so a later CancelTask finds it no more.
func (s *delayedTaskSet) begin(task *simulator.Task) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[task.Self.Value]; !ok {
		return false
	}
	delete(s.tasks, task.Self.Value)
	return true
}

// cancel ends a delayed task that has not started its replay in
// RequestCanceled; false when there is no such task.
func (s *delayedTaskSet) cancel(task *simulator.Task) bool {
	s.mu.Lock()
	d, ok := s.tasks[task.Self.Value]
	if ok {
		delete(s.tasks, task.Self.Value)
	}
	s.mu.Unlock()
	if !ok {
		return false
	}
	finishTask(task, nil, &types.RequestCanceled{}, "The task was canceled by a user.")
	close(d.cancelled)
	return true
}

// STAND-IN: not in vcsim 0.24.2 (its tasks end inside the call that starts
// them); CancelTask: a task the "delay" injection rule keeps running ends in
// RequestCanceled and its method is never run (a delayed RelocateVM_Task
// leaves the VM where it was), as vCenter cancels a relocation in flight. A
// task that already ended is InvalidState, as on vCenter; any other running
// task is NotSupported (vcsim runs none).
func cancelTask(ic *interceptor, c *call) {
	task, ok := simulator.Map.Get(c.method.This).(*simulator.Task)
	if !ok {
		notFound(c)
		return
	}
	if delayedTasks.cancel(task) {
		writeResult(c.w, "CancelTask", &types.CancelTaskResponse{})
		return
	}
	var state types.TaskInfoState
	simulator.Map.WithLock(task, func() { state = task.Info.State })
	if state == types.TaskInfoStateSuccess || state == types.TaskInfoStateError {
		writeFault(c.w, &types.InvalidState{}, "The operation is not allowed in the current state.")
		return
	}
	writeFault(c.w, &types.NotSupported{}, "The task cannot be cancelled.")
}

// STAND-IN: vcsim 0.24.2's RelocateVM_Task moves runtime.host but leaves
// every host's vm list as it was (it removes the new host's own reference
// from it); after a relocation, served or replayed, the VM is in the vm list
// of the host it runs on and of no other, as on vCenter, and each host whose
// list changed is updated through the registry so that property collectors
// (a traversal from a cluster's hosts to their VMs) hear of it.
func syncHostVMs(ref types.ManagedObjectReference) {
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	var on *types.ManagedObjectReference
	simulator.Map.WithLock(vm, func() { on = vm.Runtime.Host })
	for _, obj := range simulator.Map.All("HostSystem") {
		host, ok := obj.(*simulator.HostSystem)
		if !ok {
			continue
		}
		simulator.Map.WithLock(host, func() {
			has := simulator.FindReference(host.Vm, ref) != nil
			want := on != nil && *on == host.Self
			if has == want {
				return
			}
			vms := make([]types.ManagedObjectReference, 0, len(host.Vm)+1)
			for _, v := range host.Vm {
				if v != ref {
					vms = append(vms, v)
				}
			}
			if want {
				vms = append(vms, ref)
			}
			simulator.Map.Update(host, []types.PropertyChange{{Name: "vm", Val: vms}})
		})
	}
}
