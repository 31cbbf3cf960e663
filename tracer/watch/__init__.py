"""`podpath watch`: a low-cost recorder of every packet drop on a node, and its context.

kernel.py   bpf/watch.bpf.o: exact per-key drop counts, a rate-limited sample of full events
names.py    namespace inodes, ifindexes, drop reasons and kernel addresses to names
counters.py the per-second node counters (softnet, conntrack, neighbour tables, devices, chains)
changes.py  configuration changes as events (netlink notifications, the ruleset)
store.py    Parquet files, one directory per node, rotated by size and time; recoverable
recorder.py the loop that ties them together
"""
