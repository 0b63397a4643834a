// Command stock_vcsim stands in for a stock govmomi vcsim binary in the tests: it has the
// stock command's interface (its flags, and the "export GOVC_URL=<url> GOVC_SIM_PID=<pid>"
// line once serving) over the same simulator package, and none of the project launcher's
// extras (no control endpoint, no stand-ins, no guards). Debian's
// golang-github-vmware-govmomi-dev ships the simulator package but not the vcsim command,
// so the tests build this to check what 'virtdriver sim start --vcsim PATH' does with one.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	model := simulator.VPX()
	flag.IntVar(&model.Datacenter, "dc", model.Datacenter, "Number of datacenters")
	flag.IntVar(&model.Cluster, "cluster", model.Cluster, "Number of clusters")
	flag.IntVar(&model.ClusterHost, "host", model.ClusterHost, "Number of hosts per cluster")
	flag.IntVar(&model.Host, "standalone-host", model.Host, "Number of standalone hosts")
	flag.IntVar(&model.Datastore, "ds", model.Datastore, "Number of local datastores")
	flag.IntVar(&model.Machine, "vm", model.Machine, "Number of virtual machines per resource pool")
	flag.IntVar(&model.Pool, "pool", model.Pool, "Number of resource pools per compute resource")
	flag.IntVar(&model.Portgroup, "pg", model.Portgroup, "Number of port groups")
	flag.BoolVar(&model.Autostart, "autostart", model.Autostart, "Autostart model created VMs")
	isTLS := flag.Bool("tls", true, "Enable TLS")
	cert := flag.String("tlscert", "", "Path to TLS certificate file")
	key := flag.String("tlskey", "", "Path to TLS key file")
	listen := flag.String("l", "127.0.0.1:8989", "Listen address for vcsim")
	user := flag.String("username", "", "Login username for vcsim (any username allowed by default)")
	pass := flag.String("password", "", "Login password for vcsim (any password allowed by default)")
	flag.BoolVar(&simulator.Trace, "trace", simulator.Trace, "Trace SOAP to stderr")
	methodDelay := flag.String("method-delay", "", "Delay per method on the form 'method1:delay1,...'")
	flag.Parse()

	if *methodDelay != "" {
		delays := map[string]int{}
		for _, item := range strings.Split(*methodDelay, ",") {
			parts := strings.Split(strings.TrimSpace(item), ":")
			ms, err := strconv.Atoi(parts[len(parts)-1])
			if len(parts) != 2 || err != nil {
				log.Fatalf("bad -method-delay item %q", item)
			}
			delays[parts[0]] = ms
		}
		model.DelayConfig.MethodDelay = delays
	}
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	listenURL := &url.URL{Host: *listen}
	if *user != "" {
		listenURL.User = url.UserPassword(*user, *pass)
	}
	model.Service.Listen = listenURL
	if *isTLS {
		model.Service.TLS = new(tls.Config)
		if *cert != "" {
			pair, err := tls.LoadX509KeyPair(*cert, *key)
			if err != nil {
				log.Fatal(err)
			}
			model.Service.TLS.Certificates = []tls.Certificate{pair}
		}
	}
	server := model.Service.NewServer()
	fmt.Printf("export GOVC_URL=%s GOVC_SIM_PID=%d\n", server.URL, os.Getpid())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	model.Remove()
}
