"""The commands the importer reads, in the order their detectors are asked."""

from __future__ import annotations

from .fdb import detect_bridge_fdb, parse_bridge_fdb
from .iptables import detect_iptables, detect_iptables_list, parse_iptables, parse_iptables_list
from .ipvs import detect_ipvsadm, detect_ipvsadm_save, parse_ipvsadm, parse_ipvsadm_save
from .json_forms import detect_json, parse_json
from .links import (detect_ip_addr, detect_ip_brief, detect_ip_brief_link, detect_ip_link, parse_ip_addr,
                    parse_ip_brief, parse_ip_link)
from .neigh import detect_arp_a, detect_arp_n, detect_ip_neigh, parse_arp_a, parse_arp_n, parse_ip_neigh
from .nettools import (detect_brctl, detect_ifconfig, detect_netstat, detect_subnet_env, parse_brctl, parse_ifconfig,
                       parse_netstat, parse_subnet_env)
from .routes import (detect_ip_route, detect_ip_route_get, detect_ip_rule, parse_ip_route, parse_ip_route_get,
                     parse_ip_rule)
from .state import Command, NO_HINT
from .sysctl import detect_sysctl, parse_sysctl
from .text import Words


# --- the registry -------------------------------------------------------------------------------

COMMANDS: list[Command] = [
    Command("ip -j", detect_json, parse_json),  # sources name the table each array holds ("ip a", "ip r"...)
    Command("ip link", detect_ip_link, parse_ip_link),
    Command("ip a", detect_ip_addr, parse_ip_addr),
    Command("ip -br link", detect_ip_brief_link, parse_ip_brief),
    Command("ip -br a", detect_ip_brief, parse_ip_brief),
    Command("ip rule", detect_ip_rule, parse_ip_rule),
    Command("ip neigh", detect_ip_neigh, parse_ip_neigh),
    Command("ip r get", detect_ip_route_get, parse_ip_route_get),
    Command("ip r", detect_ip_route, parse_ip_route),
    Command("arp -a", detect_arp_a, parse_arp_a),
    Command("arp -n", detect_arp_n, parse_arp_n),
    Command("bridge fdb", detect_bridge_fdb, parse_bridge_fdb),
    Command("iptables-save", detect_iptables, parse_iptables),
    Command("ipvsadm -Ln", detect_ipvsadm, parse_ipvsadm),
    Command("ipvsadm -Sn", detect_ipvsadm_save, parse_ipvsadm_save),
    Command("sysctl", detect_sysctl, parse_sysctl),
    Command("ifconfig", detect_ifconfig, parse_ifconfig),
    Command("netstat -rn", detect_netstat, parse_netstat),
    Command("brctl show", detect_brctl, parse_brctl),
    Command("subnet.env", detect_subnet_env, parse_subnet_env),
    Command("iptables -L", detect_iptables_list, parse_iptables_list),
]
BY_NAME = {c.name: c for c in COMMANDS}
SUPPORTED = ", ".join(c.name for c in COMMANDS)


def strong_start(w: Words, k: int, exclude: tuple[str, ...] = ()) -> bool:
    """Does an unmistakable record of some command start at k? Ends squashed records early."""
    return any(c.name not in exclude and c.detect(w, k, NO_HINT) == 2 for c in COMMANDS)
