package main

// Stand-ins for the block-storage parts of vSphere that govmomi's simulator
// 0.24.2 does not model: a software iSCSI adapter on every host, iSCSI
// targets and LUNs behind it (configured by tests through the loopback
// control /_vcsim/iscsi-targets, playing the storage array), the
// HostStorageSystem calls that reach them (AddInternetScsiSendTargets,
// RescanHba), and VirtualMachine.AttachDisk_Task/DetachDisk_Task for First
// Class Disks. Like standins.go, each is the launcher's behaviour, not
// vCenter's: a test passing through one proves the request was well-formed.

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// volumeStandIns are merged into standIns (standins.go's init).
var volumeStandIns = map[string]standInFunc{
	"AddInternetScsiSendTargets": addInternetScsiSendTargets,
	"RescanHba":                  rescanHba,
	"AttachDisk_Task":            attachDisk,
	"DetachDisk_Task":            detachDisk,
}

// The software iSCSI adapter every host gets.
const (
	iscsiDevice = "vmhba65"
	iscsiKey    = "key-vim.host.InternetScsiHba-" + iscsiDevice
	iscsiPrefix = "iqn.1998-01.com.vmware:"
)

// iscsiLun is one LUN of a target, as the array serves it.
type iscsiLun struct {
	Lun        int32  `json:"lun"`
	CapacityMB int64  `json:"capacityMB"`
	UUID       string `json:"uuid"`
	Name       string `json:"canonicalName"`
}

// iscsiTarget is one target (portal "address:port" and IQN) with its LUNs.
type iscsiTarget struct {
	Portal string     `json:"portal"`
	IQN    string     `json:"iqn"`
	Luns   []iscsiLun `json:"luns"`
}

// iscsiArray holds the targets tests configured, by portal then IQN.
type iscsiArray struct {
	mu      sync.Mutex
	targets map[string]map[string]*iscsiTarget
}

var array = &iscsiArray{targets: map[string]map[string]*iscsiTarget{}}

// lunIdentity gives a LUN the same uuid and naa name on every host, as a
// real array's LUN has.
func lunIdentity(portal, iqn string, lun int32) (string, string) {
	sum := sha1.Sum([]byte(fmt.Sprintf("%s|%s|%d", portal, iqn, lun)))
	naa := "naa.6" + hex.EncodeToString(sum[:])[:31]
	return "0200" + hex.EncodeToString(sum[:])[:28] + "566972746", naa
}

func (a *iscsiArray) put(t *iscsiTarget) *iscsiTarget {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range t.Luns {
		if t.Luns[i].CapacityMB <= 0 {
			t.Luns[i].CapacityMB = 1024
		}
		t.Luns[i].UUID, t.Luns[i].Name = lunIdentity(t.Portal, t.IQN, t.Luns[i].Lun)
	}
	if a.targets[t.Portal] == nil {
		a.targets[t.Portal] = map[string]*iscsiTarget{}
	}
	a.targets[t.Portal][t.IQN] = t
	return t
}

func (a *iscsiArray) remove(portal, iqn string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.targets[portal][iqn]; !ok {
		return 0
	}
	delete(a.targets[portal], iqn)
	return 1
}

// at returns copies of the targets at one portal, sorted by IQN.
func (a *iscsiArray) at(portal string) []iscsiTarget {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []iscsiTarget
	for _, t := range a.targets[portal] {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IQN < out[j].IQN })
	return out
}

func (a *iscsiArray) all() []iscsiTarget {
	a.mu.Lock()
	var portals []string
	for p := range a.targets {
		portals = append(portals, p)
	}
	a.mu.Unlock()
	sort.Strings(portals)
	out := []iscsiTarget{}
	for _, p := range portals {
		out = append(out, a.at(p)...)
	}
	return out
}

// volumeControls serves /_vcsim/iscsi-targets: POST a target (JSON
// {"portal": "10.0.0.5:3260", "iqn": "...", "luns": [{"lun": 1,
// "capacityMB": 64}]}; the answer adds each LUN's uuid and canonicalName),
// GET the list, DELETE ?portal=&iqn= one target (its LUNs disappear from a
// host at its next RescanHba).
func volumeControls(mux *http.ServeMux) {
	mux.HandleFunc("/_vcsim/iscsi-targets", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			var t iscsiTarget
			if err := json.NewDecoder(r.Body).Decode(&t); err != nil {
				http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
				return
			}
			if !strings.Contains(t.Portal, ":") || t.IQN == "" {
				http.Error(w, "portal (address:port) and iqn are required", http.StatusBadRequest)
				return
			}
			writeJSON(w, array.put(&t))
		case http.MethodGet:
			writeJSON(w, array.all())
		case http.MethodDelete:
			q := r.URL.Query()
			writeJSON(w, map[string]int{"removed": array.remove(q.Get("portal"), q.Get("iqn"))})
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
}

// STAND-IN: not in vcsim 0.24.2 (its hosts have no iSCSI adapter): gives
// every host a software iSCSI adapter vmhba65 (IQN iqn.1998-01.com.vmware:
// <host moref>) with no send target, and makes the host's
// HostStorageSystem.storageDeviceInfo the host's own config.storageDevice
// (vcsim shares one template between all storage systems).
func installISCSIAdapters() {
	for _, e := range simulator.Map.All("HostSystem") {
		h, ok := e.(*simulator.HostSystem)
		if !ok {
			continue
		}
		simulator.Map.WithLock(h, func() {
			if h.Config == nil || h.Config.StorageDevice == nil {
				return
			}
			dev := h.Config.StorageDevice
			dev.SoftwareInternetScsiEnabled = true
			dev.HostBusAdapter = append(dev.HostBusAdapter, &types.HostInternetScsiHba{
				HostHostBusAdapter: types.HostHostBusAdapter{
					Key: iscsiKey, Device: iscsiDevice, Status: "online",
					Model: "iSCSI Software Adapter", Driver: "iscsi_vmk",
				},
				IsSoftwareBased: true,
				IScsiName:       iscsiPrefix + h.Self.Value,
			})
			if dev.ScsiTopology == nil {
				dev.ScsiTopology = &types.HostScsiTopology{}
			}
			dev.ScsiTopology.Adapter = append(dev.ScsiTopology.Adapter, types.HostScsiTopologyInterface{
				Key: "key-vim.host.ScsiTopology.Interface-" + iscsiDevice, Adapter: iscsiKey,
			})
			if ss, ok := simulator.Map.Get(h.ConfigManager.StorageSystem.Reference()).(*simulator.HostStorageSystem); ok {
				ss.StorageDeviceInfo = dev
			}
		})
	}
}

// storageHost returns the host behind a HostStorageSystem call, or writes a fault.
func storageHost(c *call) (*simulator.HostSystem, bool) {
	ss, ok := simulator.Map.Get(c.method.This).(*simulator.HostStorageSystem)
	if !ok || ss.Host == nil {
		notFound(c)
		return nil, false
	}
	h, ok := simulator.Map.Get(ss.Host.Self).(*simulator.HostSystem)
	if !ok {
		notFound(c)
		return nil, false
	}
	return h, true
}

// softwareHBA returns the host's iSCSI adapter named device (nil if none).
func softwareHBA(h *simulator.HostSystem, device string) *types.HostInternetScsiHba {
	for _, a := range h.Config.StorageDevice.HostBusAdapter {
		if hba, ok := a.(*types.HostInternetScsiHba); ok && hba.Device == device {
			return hba
		}
	}
	return nil
}

func noSuchHBA(c *call, device string) {
	writeFault(c.w, &types.NotFound{}, "no iSCSI host bus adapter "+device)
}

// STAND-IN: not in vcsim 0.24.2; AddInternetScsiSendTargets: adds each
// target (address, port; 3260 by default) to the adapter's
// configuredSendTarget, once. NotFound for an adapter the host lacks.
func addInternetScsiSendTargets(ic *interceptor, c *call) {
	req := c.method.Body.(*types.AddInternetScsiSendTargets)
	h, ok := storageHost(c)
	if !ok {
		return
	}
	found := false
	simulator.Map.WithLock(h, func() {
		hba := softwareHBA(h, req.IScsiHbaDevice)
		if hba == nil {
			return
		}
		found = true
		for _, t := range req.Targets {
			if t.Port == 0 {
				t.Port = 3260
			}
			known := false
			for _, have := range hba.ConfiguredSendTarget {
				known = known || (have.Address == t.Address && have.Port == t.Port)
			}
			if !known {
				hba.ConfiguredSendTarget = append(hba.ConfiguredSendTarget, t)
			}
		}
	})
	if !found {
		noSuchHBA(c, req.IScsiHbaDevice)
		return
	}
	writeResult(c.w, c.method.Name, &types.AddInternetScsiSendTargetsResponse{})
}

// STAND-IN: not in vcsim 0.24.2; RescanHba: the adapter sees exactly the
// targets the array serves at its send targets' portals: one topology
// target per IQN (transport address "address:port") with its LUNs, each a
// HostScsiDisk /vmfs/devices/disks/<naa> in config.storageDevice.scsiLun.
// LUNs of removed targets disappear. NotFound for an adapter the host lacks.
func rescanHba(ic *interceptor, c *call) {
	req := c.method.Body.(*types.RescanHba)
	h, ok := storageHost(c)
	if !ok {
		return
	}
	found := false
	simulator.Map.WithLock(h, func() {
		hba := softwareHBA(h, req.HbaDevice)
		if hba == nil {
			return
		}
		found = true
		dev := h.Config.StorageDevice
		var targets []types.HostScsiTopologyTarget
		var disks []types.BaseScsiLun
		n := int32(0)
		for _, st := range hba.ConfiguredSendTarget {
			portal := fmt.Sprintf("%s:%d", st.Address, st.Port)
			for _, t := range array.at(portal) {
				target := types.HostScsiTopologyTarget{
					Key:    fmt.Sprintf("key-vim.host.ScsiTopology.Target-%s:0:%d", hba.Device, n),
					Target: n,
					Transport: &types.HostInternetScsiTargetTransport{
						IScsiName: t.IQN, Address: []string{portal},
					},
				}
				for _, l := range t.Luns {
					key := "key-vim.host.ScsiDisk-" + l.Name
					target.Lun = append(target.Lun, types.HostScsiTopologyLun{
						Key: fmt.Sprintf("key-vim.host.ScsiTopology.Lun-%s:0:%d:%d", hba.Device, n, l.Lun),
						Lun: l.Lun, ScsiLun: key,
					})
					disks = append(disks, &types.HostScsiDisk{
						ScsiLun: types.ScsiLun{
							HostDevice: types.HostDevice{
								DeviceName: "/vmfs/devices/disks/" + l.Name, DeviceType: "disk",
							},
							Key: key, Uuid: l.UUID, CanonicalName: l.Name,
							DisplayName: "iSCSI Disk (" + l.Name + ")", LunType: "disk",
							Vendor: "VIRTDRVR", Model: "vcsim launcher", OperationalState: []string{"ok"},
						},
						Capacity:   types.HostDiskDimensionsLba{BlockSize: 512, Block: l.CapacityMB * 2048},
						DevicePath: "/vmfs/devices/disks/" + l.Name,
					})
				}
				targets = append(targets, target)
				n++
			}
		}
		// keep every LUN that is not this adapter's, then add what it sees now
		mine := map[string]bool{}
		for _, a := range dev.ScsiTopology.Adapter {
			if a.Adapter == hba.Key {
				for _, t := range a.Target {
					for _, l := range t.Lun {
						mine[l.ScsiLun] = true
					}
				}
			}
		}
		var luns []types.BaseScsiLun
		for _, l := range dev.ScsiLun {
			if !mine[l.GetScsiLun().Key] {
				luns = append(luns, l)
			}
		}
		dev.ScsiLun = append(luns, disks...)
		for i := range dev.ScsiTopology.Adapter {
			if dev.ScsiTopology.Adapter[i].Adapter == hba.Key {
				dev.ScsiTopology.Adapter[i].Target = targets
			}
		}
		simulator.Map.Update(h, []types.PropertyChange{{Name: "config.storageDevice", Val: dev}})
	})
	if !found {
		noSuchHBA(c, req.HbaDevice)
		return
	}
	writeResult(c.w, c.method.Name, &types.RescanHbaResponse{})
}

// replayCall sends one request through the simulator with the caller's
// session and decodes the answer into body (a vim25/methods *Body).
func (ic *interceptor) replayCall(c *call, req interface{}, name string, body interface{}) error {
	var buf bytes.Buffer
	buf.WriteString(envelopeOpen)
	if err := encodeElement(&buf, req, name, ""); err != nil {
		return err
	}
	buf.WriteString(envelopeClose)
	rec := ic.replay(c.r, buf.Bytes())
	dec := xml.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.TypeFunc = types.TypeFunc()
	return dec.Decode(&soap.Envelope{Body: body})
}

// vStorageManager is the simulator's VStorageObjectManager reference.
func vStorageManager() (types.ManagedObjectReference, bool) {
	si, ok := simulator.Map.Get(vim25.ServiceInstance).(*simulator.ServiceInstance)
	if !ok || si.Content.VStorageObjectManager == nil {
		return types.ManagedObjectReference{}, false
	}
	return *si.Content.VStorageObjectManager, true
}

// replayReconfig runs a ReconfigVM_Task through the simulator and answers
// with its task under the stand-in's method name.
func (ic *interceptor) replayReconfig(c *call, change types.VirtualDeviceConfigSpec) {
	var body methods.ReconfigVM_TaskBody
	req := &types.ReconfigVM_Task{This: c.method.This, Spec: types.VirtualMachineConfigSpec{
		DeviceChange: []types.BaseVirtualDeviceConfigSpec{&change},
	}}
	if err := ic.replayCall(c, req, "ReconfigVM_Task", &body); err != nil {
		writeSystemError(c.w, "ReconfigVM_Task: "+err.Error())
		return
	}
	if body.Fault_ != nil {
		f, _ := body.Fault_.Detail.Fault.(types.BaseMethodFault)
		if f == nil {
			f = &types.SystemError{Reason: body.Fault_.String}
		}
		writeFault(c.w, f, body.Fault_.String)
		return
	}
	task := body.Res.Returnval
	if t, ok := simulator.Map.Get(task).(*simulator.Task); ok {
		simulator.Map.WithLock(t, func() {
			simulator.Map.Update(t, []types.PropertyChange{{Name: "info.name", Val: c.method.Name}})
		})
	}
	writeTaskResult(c.w, c.method.Name, task)
}

// STAND-IN: not in vcsim 0.24.2; AttachDisk_Task: the First Class Disk
// (RetrieveVStorageObject, replayed) is added to the VM on controllerKey /
// unitNumber as a disk on its file, with vDiskId set, by a ReconfigVM_Task
// replayed through vcsim (its task is returned, renamed AttachDisk_Task).
// NotFound when the disk is not on that datastore.
func attachDisk(ic *interceptor, c *call) {
	req := c.method.Body.(*types.AttachDisk_Task)
	if _, _, ok := lookupVM(c); !ok {
		return
	}
	manager, ok := vStorageManager()
	if !ok {
		writeSystemError(c.w, "the simulator has no VStorageObjectManager")
		return
	}
	var got methods.RetrieveVStorageObjectBody
	err := ic.replayCall(c, &types.RetrieveVStorageObject{This: manager, Id: req.DiskId, Datastore: req.Datastore},
		"RetrieveVStorageObject", &got)
	if err != nil || got.Res == nil {
		writeFault(c.w, &types.NotFound{}, "First Class Disk "+req.DiskId.Id+" not found")
		return
	}
	backing, ok := got.Res.Returnval.Config.Backing.(*types.BaseConfigInfoDiskFileBackingInfo)
	if !ok {
		writeFault(c.w, &types.NotFound{}, "First Class Disk "+req.DiskId.Id+" has no file")
		return
	}
	unit := req.UnitNumber
	if unit == nil {
		writeFault(c.w, &types.InvalidArgument{InvalidProperty: "unitNumber"}, "unitNumber is required")
		return
	}
	id := req.DiskId
	ds := req.Datastore
	disk := &types.VirtualDisk{
		VirtualDevice: types.VirtualDevice{
			Key: -100, ControllerKey: req.ControllerKey, UnitNumber: unit,
			Backing: &types.VirtualDiskFlatVer2BackingInfo{
				VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{
					FileName: backing.FilePath, Datastore: &ds,
				},
				DiskMode:        string(types.VirtualDiskModePersistent),
				ThinProvisioned: types.NewBool(true),
			},
		},
		CapacityInKB: got.Res.Returnval.Config.CapacityInMB * 1024,
		VDiskId:      &id,
	}
	ic.replayReconfig(c, types.VirtualDeviceConfigSpec{
		Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: disk,
	})
}

// STAND-IN: not in vcsim 0.24.2; DetachDisk_Task: the VM's disk whose
// vDiskId is diskId is removed by a replayed ReconfigVM_Task (no file
// operation: the First Class Disk stays). NotFound when no disk has it.
func detachDisk(ic *interceptor, c *call) {
	req := c.method.Body.(*types.DetachDisk_Task)
	vm, _, ok := lookupVM(c)
	if !ok {
		return
	}
	var found *types.VirtualDisk
	simulator.Map.WithLock(vm, func() {
		for _, d := range vm.Config.Hardware.Device {
			if disk, ok := d.(*types.VirtualDisk); ok && disk.VDiskId != nil && disk.VDiskId.Id == req.DiskId.Id {
				cp := *disk
				found = &cp
			}
		}
	})
	if found == nil {
		writeFault(c.w, &types.NotFound{}, "no disk "+req.DiskId.Id+" on "+vm.Self.Value)
		return
	}
	ic.replayReconfig(c, types.VirtualDeviceConfigSpec{
		Operation: types.VirtualDeviceConfigSpecOperationRemove, Device: found,
	})
}

// rdmTable remembers the raw device mappings of each VM (moref value ->
// device key -> backing), which vcsim 0.24.2 cannot hold: its disk layout
// code assumes every disk is a flat VMDK and panics on anything else.
type rdmTable struct {
	mu   sync.Mutex
	vms  map[string]map[int32]*types.VirtualDiskRawDiskMappingVer1BackingInfo
	seen int64
}

var rdms = &rdmTable{vms: map[string]map[int32]*types.VirtualDiskRawDiskMappingVer1BackingInfo{}}

// pendingRDM is an RDM a ReconfigVM_Task adds, found again after the replay
// by the marker put in its stand-in flat backing's uuid.
type pendingRDM struct {
	marker  string
	backing *types.VirtualDiskRawDiskMappingVer1BackingInfo
}

// STAND-IN: not in vcsim 0.24.2 (raw device mappings make it panic); every
// call on a VM goes through here. A ReconfigVM_Task adding a disk with a
// VirtualDiskRawDiskMappingVer1BackingInfo is replayed with a flat backing
// instead (so vcsim creates the mapping file, "<vm>/<vm>_N.vmdk" when the
// fileName is empty, and updates its layouts), then the device gets the RDM
// backing back (compatibilityMode, diskMode, deviceName, lunUuid as sent;
// fileName and datastore of the mapping file). While any other call on a VM
// holding RDMs runs in vcsim, those disks look flat to it, and get their RDM
// backing back afterwards; removing one with fileOperation=destroy deletes the
// mapping file only. vCenter would also check that the LUN exists and is not
// in use; the launcher does not.
func (ic *interceptor) rdmAware(m *simulator.Method, body *[]byte, run func()) {
	if m == nil || m.This.Type != "VirtualMachine" {
		run()
		return
	}
	vm, ok := simulator.Map.Get(m.This).(*simulator.VirtualMachine)
	if !ok {
		run()
		return
	}
	var pending []pendingRDM
	if req, ok := m.Body.(*types.ReconfigVM_Task); ok {
		for _, c := range req.Spec.DeviceChange {
			spec := c.GetVirtualDeviceConfigSpec()
			disk, ok := spec.Device.(*types.VirtualDisk)
			if !ok || spec.Operation != types.VirtualDeviceConfigSpecOperationAdd {
				continue
			}
			rdm, ok := disk.Backing.(*types.VirtualDiskRawDiskMappingVer1BackingInfo)
			if !ok {
				continue
			}
			rdms.mu.Lock()
			rdms.seen++
			marker := fmt.Sprintf("vcsim-launcher-rdm-%d", rdms.seen)
			rdms.mu.Unlock()
			pending = append(pending, pendingRDM{marker: marker, backing: rdm})
			disk.Backing = &types.VirtualDiskFlatVer2BackingInfo{
				VirtualDeviceFileBackingInfo: rdm.VirtualDeviceFileBackingInfo,
				DiskMode:                     string(types.VirtualDiskModePersistent),
				Uuid:                         marker,
			}
		}
		if len(pending) > 0 {
			var buf bytes.Buffer
			buf.WriteString(envelopeOpen)
			if err := encodeElement(&buf, req, "ReconfigVM_Task", ""); err == nil {
				buf.WriteString(envelopeClose)
				*body = buf.Bytes()
			}
		}
	}
	rdms.mu.Lock()
	held := rdms.vms[vm.Self.Value]
	rdms.mu.Unlock()
	if len(held) == 0 && len(pending) == 0 {
		run()
		return
	}
	simulator.Map.WithLock(vm, func() { flattenRDMs(vm, held) })
	run()
	simulator.Map.WithLock(vm, func() {
		rdms.mu.Lock()
		defer rdms.mu.Unlock()
		table := rdms.vms[vm.Self.Value]
		if table == nil {
			table = map[int32]*types.VirtualDiskRawDiskMappingVer1BackingInfo{}
			rdms.vms[vm.Self.Value] = table
		}
		if vm.Config == nil {
			delete(rdms.vms, vm.Self.Value)
			return
		}
		present := map[int32]bool{}
		for _, d := range vm.Config.Hardware.Device {
			disk, ok := d.(*types.VirtualDisk)
			if !ok {
				continue
			}
			present[disk.Key] = true
			flat, _ := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			for _, p := range pending {
				if flat != nil && flat.Uuid == p.marker {
					rdm := *p.backing
					rdm.FileName = flat.FileName
					rdm.Datastore = flat.Datastore
					table[disk.Key] = &rdm
				}
			}
			if rdm, ok := table[disk.Key]; ok {
				disk.Backing = rdm
			}
		}
		for key := range table {
			if !present[key] {
				delete(table, key)
			}
		}
	})
}

// flattenRDMs shows vcsim a flat backing on the mapping file of each RDM.
func flattenRDMs(vm *simulator.VirtualMachine, held map[int32]*types.VirtualDiskRawDiskMappingVer1BackingInfo) {
	if vm.Config == nil {
		return
	}
	for _, d := range vm.Config.Hardware.Device {
		if disk, ok := d.(*types.VirtualDisk); ok {
			if rdm, ok := held[disk.Key]; ok {
				disk.Backing = &types.VirtualDiskFlatVer2BackingInfo{
					VirtualDeviceFileBackingInfo: rdm.VirtualDeviceFileBackingInfo,
					DiskMode:                     string(types.VirtualDiskModePersistent),
				}
			}
		}
	}
}
