// Command vcsim is virtdriver's test launcher for govmomi's vCenter simulator
// (Debian's govmomi 0.24.2). It serves simulator.VPX() with a configurable
// inventory, optional TLS, required credentials, a session idle timeout,
// per-method delays, a loopback-only fault-injection endpoint and stand-ins for
// a few methods that 0.24.2 lacks. See README.md in this directory.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

// passwordEnv names the environment variable holding the required login password.
const passwordEnv = "VIRTDRIVER_VCSIM_PASSWORD"

// options holds the parsed command line.
type options struct {
	dc          int
	pool        int
	portgroup   int
	cluster     int
	clusterHost int
	standalone  int
	vm          int
	ds          int
	autostart   bool
	listen      string
	control     string
	tlsCert     string
	tlsKey      string
	username    string
	password    string
	idle        time.Duration
	methodDelay string
	trace       bool
}

func parseFlags() *options {
	o := &options{}
	flag.IntVar(&o.dc, "dc", 1, "number of datacenters")
	flag.IntVar(&o.cluster, "cluster", 1, "number of clusters per datacenter")
	flag.IntVar(&o.clusterHost, "host", 3, "number of hosts per cluster")
	flag.IntVar(&o.standalone, "standalone-host", 1, "number of standalone hosts")
	flag.IntVar(&o.vm, "vm", 2, "number of VMs per standalone host and per cluster (as vcsim does)")
	flag.IntVar(&o.pool, "pool", 0, "number of child resource pools per cluster")
	flag.IntVar(&o.portgroup, "pg", 1, "number of distributed portgroups per datacenter")
	flag.IntVar(&o.ds, "ds", 1, "number of local datastores (LocalDS_N), mounted on every host")
	flag.BoolVar(&o.autostart, "autostart", true, "power on the VMs created at startup")
	flag.StringVar(&o.listen, "l", "127.0.0.1:0", "SOAP listen address")
	flag.StringVar(&o.control, "control", "127.0.0.1:0", "listen address of the plain-HTTP control endpoint (loopback only)")
	flag.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate: serve HTTPS with it (plain HTTP when empty)")
	flag.StringVar(&o.tlsKey, "tls-key", "", "PEM private key for -tls-cert")
	flag.StringVar(&o.username, "username", "", "required login user (any non-empty user when empty)")
	flag.DurationVar(&o.idle, "idle", 0, "session idle timeout (0: sessions never expire)")
	flag.StringVar(&o.methodDelay, "method-delay", "", "per-method delays before dispatch, Method:ms,...")
	flag.BoolVar(&o.trace, "trace", false, "write SOAP traffic to stderr")
	flag.Parse()
	// The password comes by environment, never by flag: a command line is readable by
	// every local user (ps, /proc/<pid>/cmdline); the environment only by the owner.
	o.password = os.Getenv(passwordEnv)
	_ = os.Unsetenv(passwordEnv)
	return o
}

// parseMethodDelay turns "A:10,B:20" into a map.
func parseMethodDelay(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.SplitN(item, ":", 2)
		if len(parts) != 2 {
			return nil, fmt.Errorf("bad -method-delay item %q (want Method:ms)", item)
		}
		ms, err := strconv.Atoi(parts[1])
		if err != nil || ms < 0 {
			return nil, fmt.Errorf("bad delay in -method-delay item %q", item)
		}
		out[parts[0]] = ms
	}
	return out, nil
}

// startupInfo is the single JSON line printed on stdout once serving.
type startupInfo struct {
	URL        string            `json:"url"`
	Inject     string            `json:"inject"`
	Control    string            `json:"control"`
	Datastores map[string]string `json:"datastores"`
	Pid        int               `json:"pid"`
	TLS        bool              `json:"tls"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "vcsim: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	o := parseFlags()
	log.SetOutput(os.Stderr)
	log.SetPrefix("vcsim: ")

	if (o.tlsCert == "") != (o.tlsKey == "") {
		fail("-tls-cert and -tls-key go together")
	}
	if (o.username == "") != (o.password == "") {
		fail("-username and $%s go together", passwordEnv)
	}
	delays, err := parseMethodDelay(o.methodDelay)
	if err != nil {
		fail("%s", err)
	}

	simulator.Trace = o.trace
	simulator.SessionIdleTimeout = o.idle

	model := simulator.VPX()
	model.Datacenter = o.dc
	model.Pool = o.pool
	model.Portgroup = o.portgroup
	model.Cluster = o.cluster
	model.ClusterHost = o.clusterHost
	model.Host = o.standalone
	model.Machine = o.vm
	model.Datastore = o.ds
	model.Autostart = o.autostart
	model.DelayConfig.MethodDelay = delays

	if err := model.Create(); err != nil {
		model.Remove()
		fail("creating the inventory: %s", err)
	}
	cleanup := func() { model.Remove() }

	svc := model.Service
	svc.Listen = &url.URL{Host: o.listen}
	if o.username != "" {
		svc.Listen.User = url.UserPassword(o.username, o.password)
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			cleanup()
			fail("loading the TLS key pair: %s", err)
		}
		svc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}

	installRegistryHooks()
	installISCSIAdapters() // volumes.go

	srv := svc.NewServer()
	// Wrap the simulator's whole HTTP handler before the address is published:
	// no client can have connected yet.
	launcher := newInterceptor(srv.Config.Handler, srv.URL)
	srv.Config.Handler = launcher

	controlLn, err := net.Listen("tcp", o.control)
	if err != nil {
		cleanup()
		fail("control listener: %s", err)
	}
	go func() {
		_ = http.Serve(controlLn, launcher.controlHandler())
	}()

	public := *srv.URL
	public.User = nil
	controlURL := "http://" + controlLn.Addr().String()
	info := startupInfo{
		URL:        public.String(),
		Inject:     controlURL + "/_vcsim/inject",
		Control:    controlURL,
		Datastores: datastoreDirs(),
		Pid:        os.Getpid(),
		TLS:        o.tlsCert != "",
	}
	line, _ := json.Marshal(info)
	fmt.Fprintln(os.Stdout, string(line))
	_ = os.Stdout.Sync()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	// Do not wait for long-polling clients (WaitForUpdatesEx): remove the
	// datastore directories and leave.
	_ = controlLn.Close()
	cleanup()
	os.Exit(0)
}

// datastoreDirs maps each datastore name to its local directory.
func datastoreDirs() map[string]string {
	out := map[string]string{}
	for _, e := range simulator.Map.All("Datastore") {
		ds, ok := e.(*simulator.Datastore)
		if !ok {
			continue
		}
		out[ds.Name] = ds.Info.GetDatastoreInfo().Url
	}
	return out
}
