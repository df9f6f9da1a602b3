"""Each experiment's --quick mode, on tiny settings: learning happened, and bad flags fail clearly."""
import json
import os

import pytest


def test_bit_reverse_quick_solves_every_problem(tmp_path):
    from experiments import bit_reverse

    res = bit_reverse.main(["--quick", f"--out={tmp_path}"])
    assert {r["problem"] for r in res["problems"]} == {"1", "2-fixed", "2-variable", "3", "4"}
    for r in res["problems"]:
        assert r["test_bit_accuracy"] == 1.0 and r["test_sequence_accuracy"] == 1.0, r
    run = res["run_dir"]
    for f in ("config.json", "results.json", "learning_curves.png", "problem3/metrics.jsonl",
              "problem3/checkpoint.msgpack"):
        assert os.path.exists(os.path.join(run, f)), f
    assert json.load(open(os.path.join(run, "config.json")))["quick"] is True


def test_unknown_flag_is_a_clear_error(capsys):
    from experiments import bit_reverse

    with pytest.raises(SystemExit) as e:
        bit_reverse.main(["--hiden=3"])
    assert e.value.code == 2
    assert "unrecognized arguments: --hiden=3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bit_reverse.main(["--hidden=three"])
    assert "argument --hidden: invalid int value: 'three'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--problems: unknown problem '7'"):
        bit_reverse.main(["--problems=1,7"])
