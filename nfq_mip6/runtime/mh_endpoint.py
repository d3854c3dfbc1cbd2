"""The Mobility Header receive stage the Home Agent and Correspondent Node runtimes share.

RFC 6275 §9.2: every queued MH is checked (:func:`nfq_mip6.wire.validate_mh`) before any
core sees it. A failed check is a counted, logged silent discard, an ICMPv6 Parameter Problem
code 0 pointing at the offending field, or a Binding Error status 2 (unknown MH type, §9.3.3);
only an accepted message goes on as a :class:`MobilityMessageReceived` event.
:class:`MobilityHeaderEndpoint` is that stage as a base class; each runtime keeps what is its
own (the HA's BU rate limit and ICMP error rate limit, how it times a BU, how it sends).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import TYPE_CHECKING

from nfq_mip6.mobility.events import (
    Action,
    MobilityHeaderRejected,
    MobilityMessageReceived,
    SendMobilityMessage,
)
from nfq_mip6.runtime.base import QueuedPacket, RoleRuntime
from nfq_mip6.wire import (
    IPPROTO_MH,
    Accepted,
    BindingAck,
    BindingErrorRequired,
    MobilityMessage,
    ParameterProblem,
    ParameterProblemMessage,
    ParsedPacket,
    SilentDiscard,
    build_icmpv6_packet,
    build_ipv6_packet,
    build_mh,
    validate_mh,
)
from nfq_mip6.wire.icmp import MIN_MTU
from nfq_mip6.wire.mh import BindingError as BindingErrorMessage

if TYPE_CHECKING:
    from nfq_mip6.metrics import AgentMetrics

__all__ = ["MobilityHeaderEndpoint", "ScreenedMobilityHeader", "mobility_message_received"]


@dataclass(frozen=True, slots=True)
class ScreenedMobilityHeader:
    """An MH that passed the §9.2 checks: the parsed message and its MH Type octet."""

    accepted: Accepted
    mh_type: int


def mobility_message_received(
    packet: ParsedPacket, accepted: Accepted, queued: QueuedPacket
) -> MobilityMessageReceived:
    """The core's input event for an accepted MH, with the addresses as received."""
    return MobilityMessageReceived(
        message=accepted.message,
        src=packet.src,
        dst=packet.dst,
        home_address=packet.home_address,
        routing_address=packet.rh2_address,
        mh_bytes=packet.upper_layer_bytes,
        interface_index=queued.interface_index,
        link_source=queued.link_source,
    )


class MobilityHeaderEndpoint(RoleRuntime):
    """Base of a runtime that answers Mobility Headers itself (HA, CN).

    The subclass provides :attr:`_address` (the source of answers to a multicast
    destination) and :meth:`_perform`.
    """

    @property
    def _address(self) -> IPv6Address:
        raise NotImplementedError

    def _perform(self, actions: list[Action], now: float) -> None:
        raise NotImplementedError

    def _feed(self, event: MobilityMessageReceived | MobilityHeaderRejected, now: float) -> None:
        raise NotImplementedError

    @property
    def _metrics(self) -> AgentMetrics | None:
        return self.ctx.metrics if self.ctx is not None else None

    def _icmp_error_allowed(self) -> bool:
        """RFC 4443 §2.4(f): may an ICMPv6 error go out now? (No limit unless overridden.)"""
        return True

    def _binding_error_answered(self) -> None:
        """Called after a Binding Error status 2 was handed to :meth:`_perform`."""

    def _screen_mobility_header(
        self, packet: ParsedPacket, now: float, queued: QueuedPacket | None = None
    ) -> ScreenedMobilityHeader | None:
        """RFC 6275 §9.2 on a queued MH; ``None`` when it was consumed here (discarded,
        answered with a Parameter Problem or a Binding Error). ``queued`` (where it came
        from) lets :meth:`_send_answer` choose how a Parameter Problem leaves."""
        verdict = validate_mh(packet)
        mh_type = (
            packet.raw[packet.upper_offset + 2] if packet.end > packet.upper_offset + 2 else -1
        )
        metrics = self._metrics
        if metrics is not None and mh_type >= 0:
            metrics.mh_received(mh_type)
        if isinstance(verdict, SilentDiscard):
            self.counters["silent_discards"] += 1
            self._feed(MobilityHeaderRejected(packet.src, mh_type, verdict.reason), now)
            self.log.info("MH from %s silently discarded: %s", packet.src, verdict.reason)
            return None
        if isinstance(verdict, ParameterProblem):
            # §9.2: ICMPv6 Parameter Problem code 0, pointer to the offending field.
            self._send_parameter_problem(packet, verdict, queued)
            return None
        if isinstance(verdict, BindingErrorRequired):
            # §9.2 / §9.3.3: unknown MH type → Binding Error status 2 to the source.
            self._perform(
                [
                    SendMobilityMessage(
                        BindingErrorMessage(verdict.status, verdict.home_address),
                        packet.dst if not packet.dst.is_multicast else self._address,
                        verdict.to,
                        link_destination=self._answer_link(packet, queued),
                    )
                ],
                now,
            )
            self._binding_error_answered()
            return None
        assert isinstance(verdict, Accepted)
        return ScreenedMobilityHeader(verdict, mh_type)

    def _send_parameter_problem(
        self, packet: ParsedPacket, problem: ParameterProblem, queued: QueuedPacket | None = None
    ) -> None:
        if not self._icmp_error_allowed():
            return
        invoking = packet.raw[: MIN_MTU - 48]  # RFC 4443 §2.4(c): fit in the minimum MTU
        message = ParameterProblemMessage(problem.code, problem.pointer, invoking)
        src = packet.dst if not packet.dst.is_multicast else self._address
        self._send_answer(
            build_icmpv6_packet(message, src, problem.to, hop_limit=64), packet, queued
        )
        self.counters["parameter_problems_sent"] += 1
        self.log.info("Parameter Problem to %s: %s", problem.to, problem.reason)

    def _answer_link(self, about: ParsedPacket, queued: QueuedPacket | None) -> bytes | None:
        """The link-layer address an answer to the queued packet ``about`` must be sent to
        on the link it came from, or ``None``: through routing (the default)."""
        return None

    def _send_answer(self, answer: bytes, about: ParsedPacket, queued: QueuedPacket | None) -> None:
        """How an answer (a Parameter Problem) to the queued packet ``about`` leaves:
        through the raw IPv6 socket (a role may send it on the link it came from instead)."""
        self._send(answer)

    def _mobility_packet(
        self, action: SendMobilityMessage, message: MobilityMessage
    ) -> tuple[bytes, int]:
        """The whole IPv6 packet carrying ``message`` as ``action`` says (HAO, RH2), and the
        MH Type octet it carries."""
        # §6.1.1 checksum over the pseudo-header with the HoA (HAO) / final destination (RH2).
        pseudo_src = action.home_address or action.src
        pseudo_dst = action.routing_address or action.dst
        mh = build_mh(message, pseudo_src, pseudo_dst)
        packet = build_ipv6_packet(
            action.src,
            action.dst,
            IPPROTO_MH,
            mh,
            hop_limit=64,
            home_address=action.home_address,
            rh2_address=action.routing_address,
        )
        return packet, mh[2]

    def _mobility_message_sent(self, mh_type: int, message: MobilityMessage) -> None:
        """Metrics for a Mobility Header handed to :meth:`_send`: its MH Type, a BA's status."""
        metrics = self._metrics
        if metrics is not None:
            metrics.mh_sent(mh_type)
            if isinstance(message, BindingAck):
                metrics.ba_sent(message.status)
