"""The network-namespace lab: a faithful two-node flannel VXLAN cluster, and its fault catalog.

    from podpath.tracer.lab import Lab, FAULTS
    lab = Lab.load("pp")          # LabError if not up
    lab.inventory(); lab.hosts(); lab.inject("fdb-missing"); lab.clear("fdb-missing")
"""

from .core import HostRef, Lab
from .faults import FAULTS, Fault, FaultFlow

__all__ = ["FAULTS", "Fault", "FaultFlow", "HostRef", "Lab"]
