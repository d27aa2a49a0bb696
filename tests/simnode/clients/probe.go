// Go's pure resolver (GODEBUG=netdns=go, PreferGo), as a pod's Go program resolves.
// Same arguments and output as probe.c, with records printed as text:
// "SRV priority weight port target." and "TXT strings-of-one-record-joined"; a name
// without such records prints "NONE" (Go does not tell NXDOMAIN from NODATA).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	r := &net.Resolver{PreferGo: true}
	for i, arg := range os.Args[1:] {
		kind, name, ok := strings.Cut(arg, ":")
		if !ok {
			fmt.Printf("%d\tERR bad argument\n", i)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		lines, err := lookup(ctx, r, kind, name)
		cancel()
		var dnsErr *net.DNSError
		switch {
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			fmt.Printf("%d\tNONE\n", i)
		case err != nil:
			fmt.Printf("%d\tERR %v\n", i, err)
		case len(lines) == 0:
			fmt.Printf("%d\tNONE\n", i)
		}
		for _, line := range lines {
			fmt.Printf("%d\t%s\n", i, line)
		}
	}
}

func lookup(ctx context.Context, r *net.Resolver, kind, name string) ([]string, error) {
	var lines []string
	switch kind {
	case "a", "aaaa":
		network, label := "ip4", "A"
		if kind == "aaaa" {
			network, label = "ip6", "AAAA"
		}
		ips, err := r.LookupIP(ctx, network, name)
		for _, ip := range ips {
			lines = append(lines, label+" "+ip.String())
		}
		return lines, err
	case "srv":
		_, srvs, err := r.LookupSRV(ctx, "", "", name)
		for _, s := range srvs {
			lines = append(lines, fmt.Sprintf("SRV %d %d %d %s", s.Priority, s.Weight, s.Port, s.Target))
		}
		return lines, err
	case "txt":
		txts, err := r.LookupTXT(ctx, name)
		for _, t := range txts {
			lines = append(lines, "TXT "+t)
		}
		return lines, err
	}
	return nil, fmt.Errorf("bad kind %q", kind)
}
