"""dnspython's stub resolver (reads resolv.conf, walks the search list), as a pod's
Python program using dnspython resolves. Same arguments and output as probe.go;
dnspython tells NXDOMAIN from NODATA (NoAnswer) and retries a truncated answer
over TCP."""
import sys

import dns.exception
import dns.resolver

TYPES = {"a": "A", "aaaa": "AAAA", "srv": "SRV", "txt": "TXT"}


def lines(rtype, answer):
    for rdata in answer:
        if rtype == "SRV":
            target = rdata.target.to_text()
            yield f"SRV {rdata.priority} {rdata.weight} {rdata.port} {target}"
        elif rtype == "TXT":
            yield "TXT " + b"".join(rdata.strings).decode()
        else:
            yield f"{rtype} {rdata.address}"


def main():
    resolver = dns.resolver.Resolver()
    resolver.lifetime = 20
    for i, arg in enumerate(sys.argv[1:]):
        kind, _, name = arg.partition(":")
        rtype = TYPES.get(kind)
        try:
            answer = resolver.resolve(name, rtype, search=True)
            for line in lines(rtype, answer):
                print(f"{i}\t{line}")
        except dns.resolver.NXDOMAIN:
            print(f"{i}\tNXDOMAIN")
        except dns.resolver.NoAnswer:
            print(f"{i}\tNODATA")
        except (dns.exception.DNSException, ValueError) as e:
            print(f"{i}\tERR {type(e).__name__} {e}")
        sys.stdout.flush()


main()
