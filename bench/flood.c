// A UDP flood for bench_watch.py's drop storm: prebuilt Ethernet frames of one small IPv4/UDP
// packet (16-byte payload, IP length 44) sent through an AF_PACKET socket on one device, in batches
// of sendmmsg, skipping the qdisc (PACKET_QDISC_BYPASS). iperf3 and UDP sockets pay the whole
// socket and IP output path per packet (~0.1-0.3 M/s here); this pays only the device's. (A TX
// ring is ~10 % cheaper, but its skbs carry the IP header in a page fragment, which the probe
// cannot read: no flow key. Packets from a NIC or a socket have their headers linear, as these do.)
// Built by the bench with clang at run time; run inside the sender's namespace.
//   flood IFNAME DST_MAC SRC_IP DST_IP DPORT SECONDS   -> prints the number of frames sent
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 256
#define FLOWS 64 // source ports: a few flow keys, as a flood from many sockets has

static unsigned short csum(const void *p, int n) {
    const unsigned short *w = p;
    unsigned long s = 0;
    for (; n > 1; n -= 2) s += *w++;
    if (n) s += *(const unsigned char *)w;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (unsigned short)~s;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: flood IFNAME DST_MAC SRC_IP DST_IP DPORT SECONDS\n");
        return 2;
    }
    int fd = socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: send only, nothing queued to read
    if (fd < 0) { perror("socket"); return 1; }
    int one = 1;
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = if_nametoindex(argv[1]), .sll_halen = 6};
    if (!to.sll_ifindex) { perror(argv[1]); return 1; }
    unsigned char dmac[6];
    if (sscanf(argv[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dmac[0], &dmac[1], &dmac[2], &dmac[3], &dmac[4],
               &dmac[5]) != 6) { fprintf(stderr, "bad MAC %s\n", argv[2]); return 2; }
    memcpy(to.sll_addr, dmac, 6);

    static unsigned char frames[FLOWS][14 + 44];
    for (int f = 0; f < FLOWS; f++) {
        unsigned char *b = frames[f];
        struct ether_header *eth = (void *)b;
        memcpy(eth->ether_dhost, dmac, 6);
        memset(eth->ether_shost, 0x02, 6);
        eth->ether_type = htons(ETHERTYPE_IP);
        struct iphdr *ip = (void *)(b + 14);
        ip->version = 4; ip->ihl = 5; ip->ttl = 64; ip->protocol = IPPROTO_UDP;
        ip->tot_len = htons(44);
        inet_pton(AF_INET, argv[3], &ip->saddr);
        inet_pton(AF_INET, argv[4], &ip->daddr);
        ip->check = csum(ip, 20);
        struct udphdr *udp = (void *)(b + 34);
        udp->source = htons(40000 + f);
        udp->dest = htons(atoi(argv[5]));
        udp->len = htons(24);  // no UDP checksum (0): allowed for IPv4
        memcpy(b + 42, "podpath-flood-16", 16);
    }
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = frames[i % FLOWS];
        iov[i].iov_len = sizeof frames[0];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &to;
        msgs[i].msg_hdr.msg_namelen = sizeof to;
    }
    double end = now() + atof(argv[6]);
    unsigned long long sent = 0;
    while (now() < end) {
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n > 0) sent += n;
    }
    printf("%llu\n", sent);
    return 0;
}
