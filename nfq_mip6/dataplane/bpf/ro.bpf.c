// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Route optimization data path of nfq-mip6 (RFC 6275 §9.3, §11.3) as tc clsact
 * direct-action programs, for kernels without CONFIG_IPV6_MIP6.
 *
 *   cn_egress   CN -> HoA:  insert a type 2 routing header (§6.4) naming the HoA, dst := CoA
 *   cn_ingress  CoA -> CN:  remove the Home Address option (§6.3), src := HoA, only when the
 *                           binding (HoA, CN) exists and its CoA is the outer source (§9.3.1)
 *   mn_egress   HoA -> CN:  insert a Destination Options header with the HAO, src := CoA
 *   mn_ingress  CN -> CoA:  remove the type 2 routing header, dst := HoA (§11.3.3)
 *
 * The bindings live in a hash map per role, key (home address, peer), value care-of address;
 * the agent writes them with bpf(2). Everything the programs do not handle (no binding, an
 * HAO with another CoA, Mobility Header packets, other extension headers, jumbograms) leaves
 * unchanged, so the NFQUEUE slow path of the agent sees it as before: tc ingress runs before
 * netfilter PREROUTING, tc egress after POSTROUTING.
 *
 * Only bpf_skb_load_bytes / bpf_skb_store_bytes / bpf_skb_adjust_room and map lookups are
 * used: no direct packet access, so non-linear skbs need no pulls. adjust_room without
 * BPF_F_ADJ_ROOM_FIXED_GSO shrinks gso_size by the inserted 24 octets, so TCP super-packets
 * are segmented to the right size; UDP GSO super-packets keep their datagram size
 * (FIXED_GSO, see adjust_room). The agent adds a host route with a 24-octet smaller MTU per
 * binding, so nothing that is not a TCP super-packet exceeds the MTU after the insert.
 *
 * Upper-layer checksums are not touched: both ends compute them with the home address
 * (§6.1.1, §11.3.1).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in6.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef L2_LEN
#define L2_LEN 14 /* Ethernet and veth; the agent attaches only to ARPHRD_ETHER devices */
#endif

#define NEXTHDR_HOP 0
#define NEXTHDR_IPV6 41
#define NEXTHDR_ROUTING 43
#define NEXTHDR_DEST 60
#define NEXTHDR_MOBILITY 135
#define IPV6_TLV_PAD1 0
#define IPV6_TLV_PADN 1
#define IPV6_TLV_HAO 201
#define IPV6_SRCRT_TYPE_2 2
#define MIP6_EXT_LEN 24 /* the RH2 and the Destination Options header with the HAO */
#define MAX_DEST_OPTS_LEN 40
#define PASS TC_ACT_UNSPEC /* leave the packet to the next filter / the stack */
/* Set on packets mn_ingress took the RH2 out of: rules/mn.rules skips its return-routability
 * sample for them (the correspondent is bound already). */
#define MIP6_RO_MARK 0x100000

/* Counter slots (per-CPU array, one __u64 each): the order is read by the agent. */
enum {
	OUT_REWRITTEN = 0, /* egress packet given RH2 / HAO */
	OUT_NOT_BOUND = 1, /* egress packet without a binding: not ours */
	OUT_SKIPPED = 2,   /* bound flow, but extension headers / MH / jumbo: left unchanged */
	OUT_ERRORS = 3,    /* a helper failed; the packet left unchanged */
	IN_REWRITTEN = 4,  /* ingress packet stripped of HAO / RH2 */
	IN_NOT_OURS = 5,   /* ingress packet without HAO / RH2 first: not ours */
	IN_PUNTED = 6,     /* HAO / RH2 present but not handled: to the slow path unchanged */
	IN_ERRORS = 7,     /* a helper failed; the packet passed on unchanged */
	N_COUNTERS = 8,
};

struct mip6_key {
	__u8 home_address[16];
	__u8 peer[16];
};

struct mip6_value {
	__u8 care_of_address[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct mip6_key);
	__type(value, struct mip6_value);
} mip6_cn_bind SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct mip6_key);
	__type(value, struct mip6_value);
} mip6_mn_bind SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, N_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} mip6_cn_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, N_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} mip6_mn_stats SEC(".maps");

static __always_inline void count(void *stats, __u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(stats, &slot);

	if (value)
		*value += 1; /* per-CPU slot: no atomic needed */
}

static __always_inline int same_address(const __u8 *a, const __u8 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1];
}

static __always_inline int load_ipv6(struct __sk_buff *skb, struct ipv6hdr *ip)
{
	if (skb->protocol != bpf_htons(ETH_P_IPV6))
		return -1;
	if (bpf_skb_load_bytes(skb, L2_LEN, ip, sizeof(*ip)))
		return -1;
	return ip->version == 6 ? 0 : -1;
}

/* The first next header is one we must not put RH2 / HAO in front of (§6.1, §6.3, §6.4):
 * Hop-by-Hop options must stay first; an RH or Destination Options header means the packet
 * already carries one (the agent's own BA / BU, or a packet the slow path rewrote); Mobility
 * Header packets are built by the agent; payload length 0 is a jumbogram / BIG TCP. */
static __always_inline int leave_alone(const struct ipv6hdr *ip)
{
	return ip->nexthdr == NEXTHDR_HOP || ip->nexthdr == NEXTHDR_ROUTING ||
	       ip->nexthdr == NEXTHDR_DEST || ip->nexthdr == NEXTHDR_MOBILITY ||
	       ip->payload_len == 0;
}

/* Open (len > 0) or close (len < 0) room right after the fixed header.
 *
 * A TCP super-packet (GSO) first: without BPF_F_ADJ_ROOM_FIXED_GSO its gso_size changes by
 * the 24 octets, so each segment keeps its size on the wire. The kernel refuses that for UDP
 * GSO (SKB_GSO_UDP_L4), whose gso_size is the size of each datagram: then again with
 * FIXED_GSO, which keeps the datagrams and makes each one 24 octets longer (shorter). That
 * fits because the binding's route carries the interface MTU less 24, and a UDP GSO sender
 * cannot choose a gso_size above its route MTU (udp_send_skb). */
static __always_inline int adjust_room(struct __sk_buff *skb, __s32 len)
{
	if (!bpf_skb_adjust_room(skb, len, BPF_ADJ_ROOM_NET, 0))
		return 0;
	if (!skb->gso_size)
		return -1;
	return bpf_skb_adjust_room(skb, len, BPF_ADJ_ROOM_NET, BPF_F_ADJ_ROOM_FIXED_GSO) ? -1 : 0;
}

/* Insert the 24-octet header `ext` after the fixed header and store the new fixed header. */
static __always_inline int insert_header(struct __sk_buff *skb, struct ipv6hdr *ip,
					 const void *ext, __u8 ext_type)
{
	if (adjust_room(skb, MIP6_EXT_LEN))
		return -1;
	if (bpf_skb_store_bytes(skb, L2_LEN + sizeof(*ip), ext, MIP6_EXT_LEN, 0))
		return -1;
	ip->nexthdr = ext_type;
	ip->payload_len = bpf_htons(bpf_ntohs(ip->payload_len) + MIP6_EXT_LEN);
	return bpf_skb_store_bytes(skb, L2_LEN, ip, sizeof(*ip), 0) ? -1 : 0;
}

/* Remove `len` octets after the fixed header and store the new fixed header. */
static __always_inline int remove_header(struct __sk_buff *skb, struct ipv6hdr *ip, __u32 len,
					 __u8 next)
{
	ip->nexthdr = next;
	ip->payload_len = bpf_htons(bpf_ntohs(ip->payload_len) - len);
	if (adjust_room(skb, -(__s32)len))
		return -1;
	return bpf_skb_store_bytes(skb, L2_LEN, ip, sizeof(*ip), BPF_F_RECOMPUTE_CSUM) ? -1 : 0;
}

/* The type 2 routing header (§6.4), one address. */
struct rh2 {
	__u8 nexthdr, hdrlen, type, segments_left;
	__u32 reserved;
	__u8 home_address[16];
};

/* The Destination Options header with the HAO (§6.3): PadN with 2 octets of data, then the
 * option at 8n+6, as Linux's own mip6 builds it. */
struct hao_header {
	__u8 nexthdr, hdrlen;
	__u8 pad_type, pad_len, pad[2];
	__u8 opt_type, opt_len;
	__u8 home_address[16];
} __attribute__((packed));

/* Egress, both roles: the binding (home, peer) of the packet, or NULL when it has none or
 * must leave unchanged (`skip`, or leave_alone); each case counted. */
static __always_inline struct mip6_value *egress_binding(const struct ipv6hdr *ip, void *map,
							 void *stats, const void *home,
							 const void *peer, int skip)
{
	struct mip6_key key;
	struct mip6_value *bound;

	__builtin_memcpy(key.home_address, home, 16);
	__builtin_memcpy(key.peer, peer, 16);
	bound = bpf_map_lookup_elem(map, &key);
	if (!bound) {
		count(stats, OUT_NOT_BOUND);
		return NULL;
	}
	if (skip || leave_alone(ip)) {
		count(stats, OUT_SKIPPED);
		return NULL;
	}
	return bound;
}

/* Ingress, both roles: a binding (home, peer) exists and its CoA is `care_of_address`. */
static __always_inline int bound_to(void *map, const void *home, const void *peer,
				    const void *care_of_address)
{
	struct mip6_key key;
	struct mip6_value *bound;

	__builtin_memcpy(key.home_address, home, 16);
	__builtin_memcpy(key.peer, peer, 16);
	bound = bpf_map_lookup_elem(map, &key);
	return bound && same_address(bound->care_of_address, care_of_address);
}

/* Insert the 24-octet `ext` and count the outcome. */
static __always_inline int egress_rewrite(struct __sk_buff *skb, struct ipv6hdr *ip,
					  const void *ext, __u8 ext_type, void *stats)
{
	count(stats, insert_header(skb, ip, ext, ext_type) ? OUT_ERRORS : OUT_REWRITTEN);
	return PASS;
}

/* Remove the `len` octets after the fixed header and count the outcome; 0 when done. */
static __always_inline int ingress_rewrite(struct __sk_buff *skb, struct ipv6hdr *ip, __u32 len,
					   __u8 next, void *stats)
{
	int failed = remove_header(skb, ip, len, next);

	count(stats, failed ? IN_ERRORS : IN_REWRITTEN);
	return failed;
}

/* §9.3.2: a packet to a bound home address leaves for the CoA with an RH2 naming the HoA. */
SEC("tc")
int cn_egress(struct __sk_buff *skb)
{
	struct ipv6hdr ip;
	struct mip6_value *bound;
	struct rh2 rh2;

	if (load_ipv6(skb, &ip))
		return PASS;
	bound = egress_binding(&ip, &mip6_cn_bind, &mip6_cn_stats, &ip.daddr, &ip.saddr, 0);
	if (!bound)
		return PASS;
	rh2.nexthdr = ip.nexthdr;
	rh2.hdrlen = 2;
	rh2.type = IPV6_SRCRT_TYPE_2;
	rh2.segments_left = 1;
	rh2.reserved = 0;
	__builtin_memcpy(rh2.home_address, &ip.daddr, 16);
	__builtin_memcpy(&ip.daddr, bound->care_of_address, 16);
	return egress_rewrite(skb, &ip, &rh2, NEXTHDR_ROUTING, &mip6_cn_stats);
}

/* §9.3.1: an HAO is accepted only for a binding whose CoA is the packet's source; then the
 * packet is handed to the stack as if it came from the home address. */
SEC("tc")
int cn_ingress(struct __sk_buff *skb)
{
	struct ipv6hdr ip;
	__u8 home_address[16];
	__u8 opts[64];
	__u64 len, i, hao_at = 0, hao_count = 0;
	int odd = 0;

	if (load_ipv6(skb, &ip))
		return PASS;
	if (ip.nexthdr != NEXTHDR_DEST) {
		count(&mip6_cn_stats, IN_NOT_OURS);
		return PASS;
	}
	if (bpf_skb_load_bytes(skb, L2_LEN + sizeof(ip), opts, 2))
		goto punt;
	len = ((__u64)opts[1] + 1) * 8;
	if (len > MAX_DEST_OPTS_LEN || opts[0] == NEXTHDR_MOBILITY)
		goto punt; /* a BU (HAO + MH) is the agent's */
	if (bpf_skb_load_bytes(skb, L2_LEN + sizeof(ip), opts, len))
		goto punt;
	i = 2;
	for (int n = 0; n < MAX_DEST_OPTS_LEN; n++) {
		__u8 type, optlen;

		if (i >= len)
			break;
		type = opts[i & 63];
		if (type == IPV6_TLV_PAD1) {
			i += 1;
			continue;
		}
		if (i + 1 >= len) {
			odd = 1;
			break;
		}
		optlen = opts[(i + 1) & 63];
		if (type == IPV6_TLV_HAO && optlen == 16) {
			hao_at = i + 2;
			hao_count++;
		} else if (type != IPV6_TLV_PADN) {
			odd = 1; /* another option: the slow path decides */
			break;
		}
		i += 2 + (__u64)optlen;
	}
	if (odd || i != len || hao_count != 1 || hao_at + 16 > len)
		goto punt;
	/* The HAO is re-read from the packet: no variable-offset stack reads. */
	if (bpf_skb_load_bytes(skb, L2_LEN + sizeof(ip) + hao_at, home_address, 16))
		goto punt;
	if (!bound_to(&mip6_cn_bind, home_address, &ip.daddr, &ip.saddr))
		goto punt; /* the slow path answers Binding Error 1 (§9.3.3) */
	__builtin_memcpy(&ip.saddr, home_address, 16);
	ingress_rewrite(skb, &ip, (__u32)len, opts[0], &mip6_cn_stats);
	return PASS;
punt:
	count(&mip6_cn_stats, IN_PUNTED);
	return PASS;
}

/* §11.3.1: a packet from the home address to a bound CN leaves from the CoA with an HAO. */
SEC("tc")
int mn_egress(struct __sk_buff *skb)
{
	struct ipv6hdr ip;
	struct mip6_value *bound;
	struct hao_header dest;

	if (load_ipv6(skb, &ip))
		return PASS;
	/* An IPv6-in-IPv6 packet is the reverse tunnel's (RFC 2473): it goes from the CoA to
	 * the HA as it is, even if it were routed with the HoA as source (§11.3.1). */
	bound = egress_binding(&ip, &mip6_mn_bind, &mip6_mn_stats, &ip.saddr, &ip.daddr,
			       ip.nexthdr == NEXTHDR_IPV6);
	if (!bound)
		return PASS;
	dest.nexthdr = ip.nexthdr;
	dest.hdrlen = 2;
	dest.pad_type = IPV6_TLV_PADN;
	dest.pad_len = 2;
	dest.pad[0] = 0;
	dest.pad[1] = 0;
	dest.opt_type = IPV6_TLV_HAO;
	dest.opt_len = 16;
	__builtin_memcpy(dest.home_address, &ip.saddr, 16);
	__builtin_memcpy(&ip.saddr, bound->care_of_address, 16);
	return egress_rewrite(skb, &ip, &dest, NEXTHDR_DEST, &mip6_mn_stats);
}

/* §11.3.3: an RH2 naming our home address, from a bound CN to our CoA, is processed here:
 * the packet reaches the stack as sent to the home address. */
SEC("tc")
int mn_ingress(struct __sk_buff *skb)
{
	struct ipv6hdr ip;
	struct rh2 rh2;

	if (load_ipv6(skb, &ip))
		return PASS;
	if (ip.nexthdr != NEXTHDR_ROUTING) {
		count(&mip6_mn_stats, IN_NOT_OURS);
		return PASS;
	}
	if (bpf_skb_load_bytes(skb, L2_LEN + sizeof(ip), &rh2, sizeof(rh2)) ||
	    rh2.type != IPV6_SRCRT_TYPE_2) {
		count(&mip6_mn_stats, IN_NOT_OURS);
		return PASS;
	}
	if (rh2.hdrlen != 2 || rh2.segments_left != 1 || rh2.nexthdr == NEXTHDR_MOBILITY ||
	    !bound_to(&mip6_mn_bind, rh2.home_address, &ip.saddr, &ip.daddr)) {
		count(&mip6_mn_stats, IN_PUNTED); /* a BA / BRR with RH2 is the agent's */
		return PASS;
	}
	__builtin_memcpy(&ip.daddr, rh2.home_address, 16);
	if (!ingress_rewrite(skb, &ip, MIP6_EXT_LEN, rh2.nexthdr, &mip6_mn_stats))
		skb->mark |= MIP6_RO_MARK;
	return PASS;
}

char LICENSE[] SEC("license") = "GPL";
