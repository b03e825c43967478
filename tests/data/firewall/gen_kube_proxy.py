#!/usr/bin/env python3
"""Prints an iptables-restore input shaped like kube-proxy's iptables mode (1.29):
N ClusterIP services with two endpoints each (KUBE-SVC-* / KUBE-SEP-* chains in nat),
the filter-table KUBE-* chains, the mangle hint chains, and every tenth service without
endpoints (a REJECT in filter KUBE-SERVICES). istio-system/istiod:grpc-xds (15012) has
endpoints, so the ruleset is healthy for the firewall check.

usage: gen_kube_proxy.py N | iptables-nft-restore
"""
import base64
import hashlib
import sys


def chain_id(prefix, key):
    digest = hashlib.sha256(key.encode()).digest()
    return prefix + base64.b32encode(digest).decode()[:16]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    services = []
    for i in range(n):
        ns = "ns-%d" % (i // 50)
        name = "svc-%d" % i
        port_name, port, proto, target = "http", 80 + (i % 7), "tcp", 8080
        if i == 0:
            ns, name, port_name, port, target = "istio-system", "istiod", "grpc-xds", 15012, 15012
        elif i == 1:
            ns, name, port_name, port, proto, target = "kube-system", "kube-dns", "dns", 53, "udp", 53
        cluster_ip = "10.96.%d.%d" % (i // 250, i % 250 + 1)
        eps = [] if (i % 10 == 9) else [
            "10.244.%d.%d" % ((i + k) % 200, (i * 3 + k) % 250 + 2) for k in range(2)
        ]
        services.append((ns, name, port_name, port, proto, target, cluster_ip, eps))

    out = []
    out.append("*mangle")
    out.append(":KUBE-IPTABLES-HINT - [0:0]")
    out.append(":KUBE-KUBELET-CANARY - [0:0]")
    out.append(":KUBE-PROXY-CANARY - [0:0]")
    out.append("COMMIT")

    out.append("*filter")
    for c in ["KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL", "KUBE-FORWARD", "KUBE-KUBELET-CANARY", "KUBE-NODEPORTS",
              "KUBE-PROXY-CANARY", "KUBE-PROXY-FIREWALL", "KUBE-SERVICES"]:
        out.append(":%s - [0:0]" % c)
    out += [
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally visible service portals" -j KUBE-EXTERNAL-SERVICES',
        '-A INPUT -j KUBE-FIREWALL',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally visible service portals" -j KUBE-EXTERNAL-SERVICES',
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -j KUBE-FIREWALL',
        '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
        '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    ]
    for (ns, name, port_name, port, proto, target, cip, eps) in services:
        if not eps:
            out.append('-A KUBE-SERVICES -d %s/32 -p %s -m comment --comment "%s/%s:%s has no endpoints" -m %s --dport %d '
                       '-j REJECT --reject-with icmp-port-unreachable' % (cip, proto, ns, name, port_name, proto, port))
    out.append("COMMIT")

    out.append("*nat")
    chains = ["KUBE-MARK-MASQ", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-SERVICES"]
    rules = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000',
        '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
        '-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0',
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ]
    for (ns, name, port_name, port, proto, target, cip, eps) in services:
        if not eps:
            continue
        key = "%s/%s:%s" % (ns, name, port_name)
        svc = chain_id("KUBE-SVC-", key + proto)
        chains.append(svc)
        rules.append('-A KUBE-SERVICES -d %s/32 -p %s -m comment --comment "%s cluster IP" -m %s --dport %d -j %s'
                     % (cip, proto, key, proto, port, svc))
        rules.append('-A %s ! -s 10.244.0.0/16 -d %s/32 -p %s -m comment --comment "%s cluster IP" -m %s --dport %d '
                     '-j KUBE-MARK-MASQ' % (svc, cip, proto, key, proto, port))
        for k, ep in enumerate(eps):
            sep = chain_id("KUBE-SEP-", key + proto + ep)
            chains.append(sep)
            rules.append('-A %s -s %s/32 -m comment --comment "%s" -j KUBE-MARK-MASQ' % (sep, ep, key))
            rules.append('-A %s -p %s -m comment --comment "%s" -m %s -j DNAT --to-destination %s:%d'
                         % (sep, proto, key, proto, ep, target))
            if k == 0 and len(eps) > 1:
                rules.append('-A %s -m comment --comment "%s -> %s:%d" -m statistic --mode random '
                             '--probability 0.50000000000 -j %s' % (svc, key, ep, target, sep))
            else:
                rules.append('-A %s -m comment --comment "%s -> %s:%d" -j %s' % (svc, key, ep, target, sep))
    rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last '
                 'rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    out += [":%s - [0:0]" % c for c in chains]
    out += rules
    out.append("COMMIT")
    print("\n".join(out))


if __name__ == "__main__":
    main()
