#!/usr/bin/env python3
"""A marketplace connector for the inventory engine (inventory.v1.Inventory), as a starting point.

It walks through what a connector does, against a live server, and asserts every outcome:

  1. stock a sku (Adjust), so the example needs nothing else on the server;
  2. check availability (Check; CheckSellable for many skus at one location, in step 4);
  3. reserve an order's units under a reservation id (the idempotency key) with a TTL;
  4. resend after a lost answer / timeout: the SAME request with the SAME id is answered
     `duplicate = true` with the original LSN;
  5. on an "order paid" webhook Commit, on "order cancelled" Release (redeliveries are harmless);
  6. handle each error class by its gRPC code and google.rpc.ErrorInfo reason;
  7. follow WatchAvailability from a saved LSN, disconnect, resume with `after_lsn` and show that
     no change is missed or repeated.

The stubs are generated from proto/inventory/v1/inventory.proto at build time (run.sh does it):

    python -m grpc_tools.protoc -I proto --python_out=BUILD --grpc_python_out=BUILD \
        proto/inventory/v1/inventory.proto

and BUILD must be on sys.path (`--stubs BUILD`, env INVENTORY_STUBS, or PYTHONPATH).

Usage: connector.py [--server HOST:PORT]   (or env INVENTORY_SERVER; default 127.0.0.1:50051)
Exit status 0 only if every step behaved as expected.
"""

import argparse
import os
import random
import sys
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))


def load_stubs(build_dir):
    """Imports the generated modules from `build_dir` (never committed; see run.sh)."""
    sys.path.insert(0, build_dir)
    global pb, pb_grpc
    try:
        from inventory.v1 import inventory_pb2 as pb  # noqa: F401
        from inventory.v1 import inventory_pb2_grpc as pb_grpc  # noqa: F401
    except ImportError as error:
        sys.exit(f"cannot import the generated stubs from {build_dir} ({error}); run run.sh, or "
                 "generate them with python -m grpc_tools.protoc (see this file's docstring)")


# ---------------------------------------------------------------------------------------------
# Errors: every failed call carries a google.rpc.Status in its trailers with an ErrorInfo
# (domain "inventory.v1", reason = ErrorReason name without the ERROR_REASON_ prefix) and, for
# INVALID_ARGUMENT, a BadRequest listing every offending field by its path in the request.

def error_details(error):
    """(code, reason, [(field, description)]) of a failed call, from its google.rpc.Status."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    reason, violations = "", []
    status = rpc_status.from_call(error)  # None if the server sent no details
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                assert info.domain == "inventory.v1", info.domain
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [(v.field, v.description) for v in bad.field_violations]
    return error.code(), reason, violations


# Codes after which the SAME request (same key, same payload) is simply sent again after a
# back-off: nothing was applied (RESOURCE_EXHAUSTED, ABORTED, UNAVAILABLE), or we do not know
# whether it was (DEADLINE_EXCEEDED, a broken connection) and idempotency makes a resend safe.
RETRYABLE = {
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # LOG_FULL, OVERLOADED, MEMORY_EXHAUSTED
    grpc.StatusCode.UNAVAILABLE,         # FAIL_STOPPED, SHUTTING_DOWN, ARCHIVE_UNAVAILABLE, no server
    grpc.StatusCode.ABORTED,             # RECONCILIATION_IN_PROGRESS, SNAPSHOT_UPLOAD_IN_PROGRESS
    grpc.StatusCode.DEADLINE_EXCEEDED,   # the answer did not come in time: maybe applied
    grpc.StatusCode.CANCELLED,           # grpcio's word for a deadline that ran out before the
                                         # call got going ("Timeout expired"): maybe applied
}


class Retrier:
    """Sends a request until it gets an answer or a non-retryable error, with a deadline per
    attempt and exponential back-off with jitter between attempts. Never changes the request:
    a retry must carry the same idempotency key AND the same payload."""

    def __init__(self, deadline_s=5.0, attempts=6, backoff_s=0.1, backoff_max_s=5.0):
        self.deadline_s, self.attempts = deadline_s, attempts
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.retries = 0  # retries made, for the example's report

    def call(self, rpc, request, deadline_s=None):
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                return rpc(request, timeout=deadline_s or self.deadline_s)
            except grpc.RpcError as error:
                code, reason, _ = error_details(error)
                if code not in RETRYABLE or attempt == self.attempts:
                    raise
                self.retries += 1
                log(f"    {code.name} {reason or ''}: retry {attempt} of the same request in "
                    f"{delay:.2f}s")
                time.sleep(delay * random.uniform(0.5, 1.0))  # full jitter spreads a herd out
                delay = min(delay * 2, self.backoff_max_s)


def expect_error(fn, code, reasons=()):
    """Runs fn, which must fail with `code` (and one of `reasons` if given); returns the error's
    (code, reason, violations)."""
    try:
        fn()
    except grpc.RpcError as error:
        details = error_details(error)
        assert details[0] == code, f"expected {code.name}, got {details[0].name}: {error.details()}"
        assert not reasons or details[1] in reasons, f"expected {reasons}, got {details[1]!r}"
        return details
    raise AssertionError(f"expected {code.name}, the call succeeded")


def log(message):
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# The connector's operations. Ids are derived from the marketplace's own ids, so a redelivered
# webhook or a restarted connector computes the same idempotency key again.

CHANNEL = "example-marketplace"
TTL_MS = 15 * 60 * 1000  # how long a hold lasts if the order is neither paid nor cancelled


def reservation_id(order_id, attempt=1):
    # attempt > 1 only after a hold expired (HOLD_EXPIRED): a new hold needs a new id.
    return f"{CHANNEL}:{order_id}" + ("" if attempt == 1 else f":{attempt}")


def stock(stub, retrier, adjustment_id, sku, location, delta, reason):
    """A goods receipt (Adjust). The adjustment id is its idempotency key."""
    return retrier.call(stub.Adjust, pb.AdjustRequest(
        adjustment_id=adjustment_id, sku=sku, location=location, delta=delta, reason=reason))


def check(stub, retrier, sku, location):
    """Availability of one position (Check answers per position; an item may carry an error)."""
    response = retrier.call(stub.Check, pb.CheckRequest(
        positions=[pb.Position(sku=sku, location=location)]))
    result = response.results[0]
    assert result.WhichOneof("result") == "availability", result
    return result.availability


def reserve_request(order_id, lines, ttl_ms=TTL_MS, attempt=1):
    return pb.ReserveRequest(
        reservation_id=reservation_id(order_id, attempt), channel=CHANNEL,
        lines=[pb.Line(sku=sku, location=location, qty=qty) for sku, location, qty in lines],
        ttl_ms=ttl_ms)


def reserve(stub, retrier, request):
    """Places a hold. Out of stock is a normal answer (`rejected`), not an error."""
    return retrier.call(stub.Reserve, request)


def on_webhook(stub, retrier, event):
    """A marketplace webhook: paid -> Commit the hold, cancelled -> Release it. Each verb has its
    own idempotency key (the reservation id), so a redelivered webhook gets `duplicate = true`.
    If the hold expired before payment arrived, re-reserve under a new id and commit that."""
    order_id, kind = event["order_id"], event["type"]
    attempt = event.get("attempt", 1)
    rid = reservation_id(order_id, attempt)
    if kind == "order.cancelled":
        return retrier.call(stub.Release, pb.ReleaseRequest(reservation_id=rid))
    assert kind == "order.paid", kind
    try:
        return retrier.call(stub.Commit, pb.CommitRequest(reservation_id=rid))
    except grpc.RpcError as error:
        code, reason, _ = error_details(error)
        if code == grpc.StatusCode.FAILED_PRECONDITION and reason in (
                "HOLD_EXPIRED", "HOLD_ALREADY_EXPIRED"):
            # The hold lapsed: the units may have been sold since. Reserve again under a NEW id
            # (the old key is recorded with its outcome; reusing it would answer the same error).
            log(f"    commit {rid}: FAILED_PRECONDITION {reason}: re-reserving under a new id")
            again = reserve(stub, retrier, reserve_request(
                order_id, event["lines"], attempt=attempt + 1))
            if again.WhichOneof("result") != "granted":
                raise  # out of stock now: the order must be refunded / backordered
            return on_webhook(stub, retrier, dict(event, attempt=attempt + 1))
        raise  # NOT_FOUND, another HOLD_* state, ...: not retryable, needs a human or a fix


# ---------------------------------------------------------------------------------------------
# Change feed

class Watcher:
    """Follows WatchAvailability for some skus from a saved LSN. A real connector persists
    `saved_lsn` (the last `through_lsn` it has fully processed) and resumes from it."""

    def __init__(self, stub, skus, saved_lsn):
        self.stub, self.skus, self.saved_lsn = stub, skus, saved_lsn

    def read_until(self, lsn, deadline_s=15.0):
        """Opens a stream after `saved_lsn`, reads until every event up to `lsn` has been looked
        at, then disconnects. Returns the changes seen as (lsn, cause name, sellable)."""
        call = self.stub.WatchAvailability(
            pb.WatchAvailabilityRequest(skus=self.skus, after_lsn=self.saved_lsn),
            timeout=deadline_s)
        seen = []
        try:
            for response in call:
                for change in response.changes:
                    seen.append((change.lsn, pb.ChangeCause.Name(change.cause),
                                 change.position.sellable))
                # Every event up to through_lsn has been looked at: this is the resume point.
                self.saved_lsn = response.through_lsn
                if response.through_lsn >= lsn:
                    break
        finally:
            call.cancel()  # disconnect (a crash or a network break would do the same)
        return seen


# ---------------------------------------------------------------------------------------------
# The walk-through

def run(server):
    channel = grpc.insecure_channel(server)
    grpc.channel_ready_future(channel).result(timeout=10)
    stub = pb_grpc.InventoryStub(channel)
    retrier = Retrier()

    # Fresh ids per run, so the example can run again against the same server.
    run_id = f"{int(time.time() * 1000)}-{os.getpid()}"
    sku, location = f"example-sneaker-{run_id}", "web-dc"
    line = lambda qty: [(sku, location, qty)]  # noqa: E731

    log(f"1. stock {sku}@{location} (Adjust +10)")
    adjusted = stock(stub, retrier, f"receipt-{run_id}", sku, location, 10, "goods receipt")
    assert not adjusted.duplicate and adjusted.lsn > 0, adjusted
    # Start the change feed just before our first write (a real connector starts from the LSN
    # it saved last time). It is read in step 7.
    watcher = Watcher(stub, [sku], saved_lsn=adjusted.lsn - 1)
    writes = [adjusted.lsn]  # LSNs of our writes that change the position

    log("2. check availability")
    availability = check(stub, retrier, sku, location)
    assert (availability.exists, availability.on_hand, availability.sellable) == (True, 10, 10), \
        availability
    log(f"   on_hand {availability.on_hand}, reserved {availability.reserved}, "
        f"sellable {availability.sellable}")

    log("3. reserve 2 units for order A (reservation id = idempotency key, TTL 15 min)")
    order_a = reserve_request(f"A-{run_id}", line(2))
    # Retry rule, shown with a deliberately tiny deadline: the call may or may not have reached
    # the server, so the only safe move is to resend the SAME request (same id, same payload).
    try:
        stub.Reserve(order_a, timeout=0.0005)
        log("   the 0.5 ms deadline was met anyway")
    except grpc.RpcError as error:
        # grpcio says DEADLINE_EXCEEDED, or CANCELLED ("Timeout expired") when the deadline ran
        # out before the call got going; the rule is the same for both.
        assert error.code() in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                grpc.StatusCode.CANCELLED), error
        log(f"   {error.code().name} after 0.5 ms: applied or not, we cannot tell -> resend it")
    granted = reserve(stub, retrier, order_a)
    assert granted.WhichOneof("result") == "granted", granted
    log(f"   granted at LSN {granted.lsn}, duplicate={granted.duplicate} ("
        + ("the timed-out attempt had been applied" if granted.duplicate else "first applied now")
        + f"), expires at {granted.granted.expires_at_ms} ms")
    writes.append(granted.lsn)

    log("4. resend the same Reserve (as after a lost answer): the original answer comes back")
    again = reserve(stub, retrier, order_a)
    assert again.duplicate and again.lsn == granted.lsn, again
    assert again.granted.expires_at_ms == granted.granted.expires_at_ms, again
    log(f"   duplicate={again.duplicate}, LSN {again.lsn} (the original)")
    availability = check(stub, retrier, sku, location)
    assert (availability.reserved, availability.sellable) == (2, 8), availability  # held once
    # A listing sync reads many skus at one location at once: bare numbers in request order,
    # 0 for a sku never stocked there.
    listing = retrier.call(stub.CheckSellable, pb.CheckSellableRequest(
        location=location, skus=[sku, f"never-{run_id}", sku]))
    assert list(listing.sellable) == [8, 0, 8], listing
    log(f"   CheckSellable of [{sku}, never-..., {sku}] at {location}: {list(listing.sellable)}")

    log("5. webhooks: order A paid -> Commit; order B cancelled -> Release")
    order_b = reserve_request(f"B-{run_id}", line(3))
    b = reserve(stub, retrier, order_b)
    assert b.WhichOneof("result") == "granted" and not b.duplicate, b
    writes.append(b.lsn)
    paid = {"type": "order.paid", "order_id": f"A-{run_id}", "lines": line(2)}
    committed = on_webhook(stub, retrier, paid)
    assert not committed.duplicate and committed.lines[0].committed == 2, committed
    writes.append(committed.lsn)
    redelivered = on_webhook(stub, retrier, paid)  # marketplaces deliver at least once
    assert redelivered.duplicate and redelivered.lsn == committed.lsn, redelivered
    log(f"   commit A at LSN {committed.lsn}; redelivered webhook: duplicate, same LSN")
    released = on_webhook(stub, retrier, {"type": "order.cancelled", "order_id": f"B-{run_id}"})
    assert not released.duplicate, released
    writes.append(released.lsn)
    log(f"   release B at LSN {released.lsn}")
    availability = check(stub, retrier, sku, location)
    assert (availability.on_hand, availability.reserved, availability.sellable) == (8, 0, 8), \
        availability

    # Read part of the feed now, remember where we stopped, and disconnect.
    first_part = watcher.read_until(committed.lsn)
    resume_at = watcher.saved_lsn
    log(f"   watch (first connection): {len(first_part)} changes, saved LSN {resume_at}")

    log("6. error classes")
    # Out of stock is not an error: a normal answer, recorded under the id like a grant.
    short = reserve(stub, retrier, reserve_request(f"C-{run_id}", line(100)))
    assert short.WhichOneof("result") == "rejected", short
    assert short.rejected.short_lines[0].available == 8, short
    log(f"   out of stock: rejected (a normal answer), available "
        f"{short.rejected.short_lines[0].available}")

    # INVALID_ARGUMENT: malformed; nothing changed. Fix the request (the BadRequest names every
    # offending field) and send the fixed one under the same key.
    bad = pb.ReserveRequest(reservation_id=f"{CHANNEL}:D-{run_id}", channel=CHANNEL,
                            lines=[pb.Line(sku=sku, location=location, qty=0)], ttl_ms=10)
    _, reason, violations = expect_error(lambda: stub.Reserve(bad, timeout=5),
                                         grpc.StatusCode.INVALID_ARGUMENT, ("INVALID_FIELD",))
    # Both fields are wrong, and the BadRequest names both.
    fields = {field for field, _ in violations}
    assert fields == {"lines[0].qty", "ttl_ms"}, violations
    log(f"   INVALID_ARGUMENT {reason}: {violations} -> fix, resend under the same id")
    fixed = reserve(stub, retrier, reserve_request(f"D-{run_id}", line(1)))
    assert fixed.WhichOneof("result") == "granted", fixed
    writes.append(fixed.lsn)

    # ALREADY_EXISTS KEY_REUSED: the same id with another payload is a bug in the connector
    # (two orders mapped to one id, or a retry that changed the request). Never retry it.
    # The BadRequest names the path that differs from the first request.
    reused = reserve_request(f"A-{run_id}", line(5))
    _, reason, violations = expect_error(lambda: reserve(stub, retrier, reused),
                                         grpc.StatusCode.ALREADY_EXISTS, ("KEY_REUSED",))
    assert [field for field, _ in violations] == ["lines[0].qty"], violations
    log(f"   ALREADY_EXISTS {reason} at {violations[0][0]} -> a bug: alert, do not retry")

    # NOT_FOUND: the engine does not know the hold (never placed, or forgotten after the key
    # retention window). Not retryable; reconcile the order by hand or reserve anew.
    _, reason, _ = expect_error(
        lambda: on_webhook(stub, retrier, {"type": "order.paid", "order_id": f"nope-{run_id}"}),
        grpc.StatusCode.NOT_FOUND, ("RESERVATION_NOT_FOUND",))
    log(f"   NOT_FOUND {reason} -> unknown order: reconcile, do not retry")

    # FAILED_PRECONDITION HOLD_EXPIRED: payment arrived after the TTL. on_webhook re-reserves
    # under a new id and commits that. (1,000 ms is the shortest TTL the server accepts.)
    order_e = reserve_request(f"E-{run_id}", line(1), ttl_ms=1000)
    e = reserve(stub, retrier, order_e)
    assert e.WhichOneof("result") == "granted", e
    writes.append(e.lsn)
    time.sleep(1.5)
    commit_e = on_webhook(stub, retrier, {"type": "order.paid", "order_id": f"E-{run_id}",
                                          "lines": line(1)})
    assert not commit_e.duplicate and commit_e.lines[0].committed == 1, commit_e
    writes.append(commit_e.lsn)
    hold = stub.GetReservation(pb.GetReservationRequest(
        reservation_id=reservation_id(f"E-{run_id}")), timeout=5).reservation
    assert pb.HoldState.Name(hold.state) == "HOLD_STATE_EXPIRED", hold
    log(f"   FAILED_PRECONDITION (hold expired) -> re-reserved as "
        f"{reservation_id(f'E-{run_id}', 2)} and committed at LSN {commit_e.lsn}")

    # RESOURCE_EXHAUSTED / UNAVAILABLE / ABORTED: nothing was applied; back off and resend the
    # same request. Shown against an address where no server listens (UNAVAILABLE).
    dead = pb_grpc.InventoryStub(grpc.insecure_channel("127.0.0.1:9"))
    quick = Retrier(deadline_s=1.0, attempts=3, backoff_s=0.05)
    expect_error(lambda: quick.call(dead.Check, pb.CheckRequest(
        positions=[pb.Position(sku=sku, location=location)])), grpc.StatusCode.UNAVAILABLE)
    assert quick.retries == 2, quick.retries
    log(f"   UNAVAILABLE -> backed off and resent {quick.retries} times, then gave up")

    availability = check(stub, retrier, sku, location)
    # 10 received - 2 (A) - 1 (E, second hold) = 7 on hand; D holds 1.
    assert (availability.on_hand, availability.reserved, availability.sellable) == (7, 1, 6), \
        availability

    log("7. resume the change feed from the saved LSN")
    second_part = watcher.read_until(max(writes))
    log(f"   watch (reconnected after LSN {resume_at}): {len(second_part)} changes, "
        f"now at LSN {watcher.saved_lsn}")
    # Every change after the saved LSN, none before it, none twice:
    assert all(lsn > resume_at for lsn, _, _ in second_part), second_part
    combined = first_part + second_part
    lsns = [lsn for lsn, _, _ in combined]
    assert lsns == sorted(set(lsns)), f"repeated or out of order: {lsns}"
    # ... and exactly what one uninterrupted stream from the start sees.
    whole = Watcher(stub, [sku], saved_lsn=adjusted.lsn - 1).read_until(watcher.saved_lsn)
    assert [c[:2] for c in combined] == [c[:2] for c in whole], (combined, whole)
    assert set(writes) <= set(lsns), (writes, lsns)
    causes = [cause.removeprefix("CHANGE_CAUSE_") for _, cause, _ in combined]
    assert "EXPIRED" in causes, causes  # the expiry of E's first hold, written by the server
    log(f"   {len(combined)} changes, none missed or repeated: {' '.join(causes)}")

    channel.close()
    log(f"all steps behaved as expected ({retrier.retries} retries)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default=os.environ.get("INVENTORY_SERVER", "127.0.0.1:50051"),
                        help="host:port (env INVENTORY_SERVER; default 127.0.0.1:50051)")
    parser.add_argument("--stubs", default=os.environ.get("INVENTORY_STUBS",
                                                          os.path.join(HERE, "build")),
                        help="folder of the generated stubs (default: build/ next to this file)")
    args = parser.parse_args()
    load_stubs(args.stubs)
    log(f"connector example against {args.server}")
    try:
        run(args.server)
    except AssertionError as failure:
        log(f"FAILED: a step did not behave as expected: {failure!r}")
        raise
    except grpc.FutureTimeoutError:
        sys.exit(f"FAILED: no server answers at {args.server}")


if __name__ == "__main__":
    main()
