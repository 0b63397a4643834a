package main

// Guards: argument checks run before vcsim 0.24.2 handlers that would
// otherwise panic on them and, for CreateVM, leave a half-made "ghost" VM in
// the folder. A guarded call returns a Task that ends in error with the fault
// a vCenter would plausibly give; the handler is never reached. Panics the
// guards do not foresee are still turned into SystemError faults by the
// interceptor.

import (
	"fmt"
	"os"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

type guardFunc func(m *simulator.Method) (types.BaseMethodFault, string)

var guards = map[string]guardFunc{
	"CreateVM_Task":   guardCreateVM,
	"ReconfigVM_Task": guardReconfigVM,
	"CloneVM_Task":    guardCloneVM,
	"RelocateVM_Task": guardRelocateVM,
}

// datastoreNamed reports whether a datastore with that name exists.
func datastoreNamed(name string) bool {
	for _, e := range simulator.Map.All("Datastore") {
		if ds, ok := e.(*simulator.Datastore); ok && ds.Name == name {
			return true
		}
	}
	return false
}

// networkNamed reports whether a network (standard, distributed portgroup or
// opaque) with that name exists.
func networkNamed(name string) bool {
	for _, kind := range []string{"Network", "DistributedVirtualPortgroup", "OpaqueNetwork"} {
		for _, e := range simulator.Map.All(kind) {
			if e.Entity().Name == name {
				return true
			}
		}
	}
	return false
}

// isA reports whether ref names an existing object of the given Go type.
func isA(ref *types.ManagedObjectReference, check func(mo.Reference) bool) bool {
	if ref == nil {
		return true
	}
	obj := simulator.Map.Get(*ref)
	return obj != nil && check(obj)
}

// checkVMPath checks the datastore of "[ds] path".
func checkVMPath(p string) (types.BaseMethodFault, string) {
	if !strings.HasPrefix(p, "[") || !strings.Contains(p, "]") {
		return &types.InvalidDatastorePath{DatastorePath: p}, "invalid datastore path " + p
	}
	name := p[1:strings.Index(p, "]")]
	if !datastoreNamed(name) {
		return &types.InvalidDatastore{Name: name}, "no datastore named " + name
	}
	return nil, ""
}

// checkNICs checks the network names of added or edited NIC backings.
func checkNICs(changes []types.BaseVirtualDeviceConfigSpec) (types.BaseMethodFault, string) {
	for i, c := range changes {
		spec := c.GetVirtualDeviceConfigSpec()
		if spec.Operation == types.VirtualDeviceConfigSpecOperationRemove || spec.Device == nil {
			continue
		}
		nic, ok := spec.Device.(types.BaseVirtualEthernetCard)
		if !ok {
			continue
		}
		b, ok := nic.GetVirtualEthernetCard().Backing.(*types.VirtualEthernetCardNetworkBackingInfo)
		if !ok || b.DeviceName == "" || networkNamed(b.DeviceName) {
			continue
		}
		fault := &types.InvalidDeviceBacking{}
		fault.DeviceIndex = int32(i)
		return fault, fmt.Sprintf("no network named %q", b.DeviceName)
	}
	return nil, ""
}

func guardCreateVM(m *simulator.Method) (types.BaseMethodFault, string) {
	req := m.Body.(*types.CreateVM_Task)
	// vCenter refuses a second VM of one name in a folder; vcsim 0.24.2 makes it.
	if f, ok := simulator.Map.Get(m.This).(*simulator.Folder); ok && req.Config.Name != "" {
		if ref := vmNamed(f, req.Config.Name); ref != nil {
			return &types.DuplicateName{Name: req.Config.Name, Object: *ref},
				fmt.Sprintf("The name '%s' already exists.", req.Config.Name)
		}
	}
	if req.Config.Files != nil && req.Config.Files.VmPathName != "" {
		if f, msg := checkVMPath(req.Config.Files.VmPathName); f != nil {
			return f, msg
		}
	}
	if f, msg := checkParentDisks(req.Config.DeviceChange); f != nil {
		return f, msg
	}
	return checkNICs(req.Config.DeviceChange)
}

// vmNamed finds a VM of the folder by name, reading only the name field (a half-made VM
// that an earlier panic left in the folder must not panic the guard too).
func vmNamed(folder *simulator.Folder, name string) *types.ManagedObjectReference {
	for _, child := range folder.ChildEntity {
		if child.Type != "VirtualMachine" {
			continue
		}
		if vm, ok := simulator.Map.Get(child).(*simulator.VirtualMachine); ok && vm != nil &&
			vm.Name == name {
			ref := child
			return &ref
		}
	}
	return nil
}

// checkParentDisks refuses a new disk whose parent (a linked clone's base) is missing,
// as vCenter does (FileNotFound); vcsim 0.24.2 makes the VM with a dangling parent.
func checkParentDisks(changes []types.BaseVirtualDeviceConfigSpec) (types.BaseMethodFault, string) {
	for _, c := range changes {
		spec := c.GetVirtualDeviceConfigSpec()
		disk, ok := spec.Device.(*types.VirtualDisk)
		if !ok || spec.Operation != types.VirtualDeviceConfigSpecOperationAdd {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok || b.Parent == nil || b.Parent.FileName == "" {
			continue
		}
		local, fault := datastoreFile(b.Parent.FileName)
		if fault != nil {
			return fault, "bad parent disk path " + b.Parent.FileName
		}
		if _, err := os.Stat(local); err != nil {
			return &types.FileNotFound{FileFault: types.FileFault{File: b.Parent.FileName}},
				"File " + b.Parent.FileName + " was not found"
		}
	}
	return nil, ""
}

func guardReconfigVM(m *simulator.Method) (types.BaseMethodFault, string) {
	req := m.Body.(*types.ReconfigVM_Task)
	return checkNICs(req.Spec.DeviceChange)
}

func isDatastore(o mo.Reference) bool { _, ok := o.(*simulator.Datastore); return ok }
func isPool(o mo.Reference) bool {
	switch o.(type) {
	case *simulator.ResourcePool, *simulator.VirtualApp:
		return true
	}
	return false
}
func isHost(o mo.Reference) bool   { _, ok := o.(*simulator.HostSystem); return ok }
func isFolder(o mo.Reference) bool { _, ok := o.(*simulator.Folder); return ok }
func badRef(what string, ref *types.ManagedObjectReference) (types.BaseMethodFault, string) {
	return &types.ManagedObjectNotFound{Obj: *ref}, fmt.Sprintf("%s %s not found", what, ref.Value)
}

func checkRelocateSpec(spec *types.VirtualMachineRelocateSpec) (types.BaseMethodFault, string) {
	switch {
	case !isA(spec.Datastore, isDatastore):
		return badRef("datastore", spec.Datastore)
	case !isA(spec.Pool, isPool):
		return badRef("resource pool", spec.Pool)
	case !isA(spec.Host, isHost):
		return badRef("host", spec.Host)
	case !isA(spec.Folder, isFolder):
		return badRef("folder", spec.Folder)
	}
	return checkNICs(spec.DeviceChange)
}

func guardCloneVM(m *simulator.Method) (types.BaseMethodFault, string) {
	req := m.Body.(*types.CloneVM_Task)
	if !isA(&req.Folder, isFolder) {
		return badRef("folder", &req.Folder)
	}
	if f, msg := checkRelocateSpec(&req.Spec.Location); f != nil {
		return f, msg
	}
	if req.Spec.Config != nil {
		return checkNICs(req.Spec.Config.DeviceChange)
	}
	return nil, ""
}

func guardRelocateVM(m *simulator.Method) (types.BaseMethodFault, string) {
	req := m.Body.(*types.RelocateVM_Task)
	return checkRelocateSpec(&req.Spec)
}
