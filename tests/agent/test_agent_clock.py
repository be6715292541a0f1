"""The clock offset and sync state in telemetry: chrony's CSV tracking line or systemd's
timedatectl where either answers, null (and no alarm) where neither exists."""
from device_agent.telemetry import (ClockJumps, ClockReading, FixedClock, MachineProbe,
                                    SystemClock, clock_jump_detail,
                                    chronyc_unsynced, health_alarms, parse_chronyc_tracking,
                                    parse_timedatectl_show)

# ``chronyc -c tracking`` on a synchronised Raspberry Pi: the clock 1.234 ms slow of NTP time
CHRONY_CSV_SLOW = ("A29FC87B,ntp.vnpt.vn,3,1764871234.567891011,0.001234567,-0.000045678,"
                   "0.000123456,-7.123,-0.002,0.045,0.012345678,0.000678901,1031.9,Normal\n")
# the same tool 250 ms fast of NTP time
CHRONY_CSV_FAST = ("C0A80101,192.168.1.1,2,1764871234.000000000,-0.250000000,0.000001000,"
                   "0.000002000,1.000,0.000,0.010,0.001000000,0.000100000,64.0,Normal\n")
# chronyd running with no source reached yet
CHRONY_CSV_UNSYNCED = ("00000000,,0,0.000000000,0.000000000,0.000000000,0.000000000,0.000,"
                       "0.000,0.000,1.000000000,1.000000000,0.0,Not synchronised\n")
TIMEDATECTL_SYNCED = ("Timezone=Asia/Ho_Chi_Minh\nLocalRTC=no\nCanNTP=yes\nNTP=yes\n"
                      "NTPSynchronized=yes\nTimeUSec=Thu 2026-12-04 20:00:00 +07\n"
                      "RTCTimeUSec=n/a\n")
TIMEDATECTL_UNSYNCED = TIMEDATECTL_SYNCED.replace("NTPSynchronized=yes", "NTPSynchronized=no")


def test_chronyc_csv_offset_is_local_minus_ntp():
    assert parse_chronyc_tracking(CHRONY_CSV_SLOW) == -1
    assert parse_chronyc_tracking(CHRONY_CSV_FAST) == 250
    assert not chronyc_unsynced(CHRONY_CSV_SLOW)
    assert chronyc_unsynced(CHRONY_CSV_UNSYNCED)
    assert parse_chronyc_tracking("506 Cannot talk to daemon\n") is None
    assert parse_chronyc_tracking("a,b,c,d,not-a-number,f,g,h,i,j,k,l,m,Normal") is None


def test_timedatectl_show_gives_the_sync_state_only():
    assert parse_timedatectl_show(TIMEDATECTL_SYNCED) is True
    assert parse_timedatectl_show(TIMEDATECTL_UNSYNCED) is False
    assert parse_timedatectl_show("Timezone=UTC\n") is None


def runner(outputs):
    calls = []

    def run(argv):
        calls.append(argv)
        return outputs.get(argv[0])
    return run, calls


def test_system_clock_asks_chrony_first_then_timedatectl_then_knows_nothing():
    run, calls = runner({"chronyc": CHRONY_CSV_FAST, "timedatectl": TIMEDATECTL_UNSYNCED})
    assert SystemClock(run).read() == ClockReading(250, True)
    assert calls == [["chronyc", "-c", "tracking"]]

    run, calls = runner({"chronyc": CHRONY_CSV_UNSYNCED})
    assert SystemClock(run).read() == ClockReading(None, False)  # no source: no offset

    run, calls = runner({"timedatectl": TIMEDATECTL_UNSYNCED})
    assert SystemClock(run).read() == ClockReading(None, False)
    assert calls == [["chronyc", "-c", "tracking"], ["timedatectl", "show"]]

    run, _ = runner({"chronyc": "506 Cannot talk to daemon\n", "timedatectl": TIMEDATECTL_SYNCED})
    assert SystemClock(run).read() == ClockReading(None, True)

    run, _ = runner({})  # neither tool installed (run_tool gives None for a missing command)
    assert SystemClock(run).read() == ClockReading(None, None)


def test_probe_reports_the_clock_source_and_raises_unsynced_once(tmp_path):
    clock = FixedClock(ClockReading(-120, True))
    probe = MachineProbe(tmp_path, proc=tmp_path / "none", sys=tmp_path / "none",
                         run=lambda argv: None, clock=clock)
    sample = probe.sample()
    assert sample["clock_offset_ms"] == -120 and sample["_clock_unsynced"] is False
    active, raised = health_alarms(sample, frozenset())
    assert raised == []

    clock.reading = ClockReading(None, False)
    sample = probe.sample()
    assert sample["clock_offset_ms"] is None and sample["_clock_unsynced"] is True
    active, raised = health_alarms(sample, active)
    assert [code for code, _ in raised] == ["clock_unsynced"]
    assert health_alarms(probe.sample(), active)[1] == []

    clock.reading = ClockReading()  # nothing known: null offset, no alarm
    sample = probe.sample()
    assert sample["clock_offset_ms"] is None and sample["_clock_unsynced"] is False


def test_missing_tools_give_null(tmp_path):
    missing = str(tmp_path / "no-such-tool")
    from device_agent.telemetry import run_tool
    assert run_tool([missing, "tracking"]) is None
    probe = MachineProbe(tmp_path, run=lambda argv: run_tool([missing, *argv[1:]]))
    assert probe.sample()["clock_offset_ms"] is None


def test_a_step_of_the_wall_clock_against_the_monotonic_one_is_a_clock_jump():
    jumps = ClockJumps(threshold_ms=5000)
    base = 1_764_000_000_000

    def at(mono_ms, skew_ms):  # the wall clock ``skew_ms`` off where it started
        return jumps.check(base + mono_ms + skew_ms, mono_ms)
    assert at(0, 0) is None                        # the first reading: a baseline
    assert at(1_000, 0) is None                    # both advanced alike
    assert at(2_000, 100) is None                  # slewed 100 ms: no step
    assert at(3_000, 100 + 7_200_000) == 7_200_000     # 2 hours forward
    assert at(4_000, 100) == -7_200_000            # and back
    assert at(5_000, 100 - 4_000) is None          # under the threshold
    assert "forward by 7200 s" in clock_jump_detail(7_200_000)
    assert "back by 300 s" in clock_jump_detail(-300_000)
