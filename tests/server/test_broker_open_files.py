"""The broker's open-files limit: raised for the fleet it should take, never above the hard
limit, and a clear line naming the limit and the nodes it allows when that is too few."""
import resource

from server.mosquitto import BROKER_OWN_FILES, broker_open_files, render_conf


def test_the_limit_is_raised_from_the_common_default_for_a_province():
    files = broker_open_files(10_000, 1024, 1_048_576)
    assert files.limit == 10_000 + BROKER_OWN_FILES
    assert files.nodes == 10_000 and files.enough
    assert f"limit {files.limit}" in files.message and "10000 node" in files.message


def test_a_limit_already_higher_is_kept():
    files = broker_open_files(100, 65536, 65536)
    assert files.limit == 65536 and files.enough


def test_without_a_hard_limit_the_broker_gets_what_it_needs():
    files = broker_open_files(10_000, 1024, resource.RLIM_INFINITY)
    assert files.limit == 10_000 + BROKER_OWN_FILES and files.enough


def test_a_hard_limit_too_low_is_said_with_the_node_count_it_allows_and_the_remedy():
    files = broker_open_files(10_000, 1024, 4096)
    assert files.limit == 4096 and not files.enough
    assert files.nodes == 4096 - BROKER_OWN_FILES
    assert "only about 4032 nodes" in files.message and "10000 wanted" in files.message
    assert "LimitNOFILE=10064" in files.message and "ulimit -Hn 10064" in files.message


def test_the_broker_config_refuses_connections_past_the_limit_itself(tmp_path):
    conf = render_conf(port=1883, directory=tmp_path, max_connections=4032)
    assert conf.count("max_connections 4032") == 1
    assert conf.index("listener 1883") < conf.index("max_connections 4032")
