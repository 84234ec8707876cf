"""What the comparison page believes of a run, from its dvc.lock and `dvc exp show`: an
output counts as the run's only when its stage ran for the run's params on its inputs."""

from __future__ import annotations

from vaepipe.compare.collect import fresh_stages, runs_of

LOCK = {"stages": {
    "train": {"params": {"params.yaml": {"beta": 1, "train.adam_eps": "1e-08", "project": {"epochs": [0, 5]}}},
              "deps": [{"path": "data/normalized", "md5": "n.dir"}],
              "outs": [{"path": "models/model.pt", "md5": "m1"}, {"path": "plots/training.csv", "md5": "c"}]},
    "generate": {"params": {"params.yaml": {"generate": {"samples": 64}}},
                 "deps": [{"path": "models/model.pt", "md5": "m1"}],
                 "outs": [{"path": "plots/samples.png", "md5": "s"}]},
}}
PARAMS = {"beta": 1.0, "train.adam_eps": 1e-08, "project.epochs": "[0, 5]", "generate.samples": 64}


def test_a_run_whose_every_stage_ran_is_fresh():
    assert fresh_stages(LOCK, PARAMS) == {"train", "generate"}


def test_a_changed_param_makes_its_stage_and_what_follows_stale():
    assert fresh_stages(LOCK, PARAMS | {"beta": 2}) == set()
    assert fresh_stages(LOCK, PARAMS | {"generate.samples": 16}) == {"train"}


def test_an_input_another_run_made_is_stale():
    """`dvc exp run train`: generate's recorded model is not the model train recorded."""
    lock = {"stages": {**LOCK["stages"], "train": {**LOCK["stages"]["train"],
                                                   "outs": [{"path": "models/model.pt", "md5": "m2"}]}}}
    assert fresh_stages(lock, PARAMS) == {"train"}


def test_queued_and_failed_runs_keep_their_params_only():
    show = [{"rev": "a" * 40, "data": {"params": {"params.yaml": {"data": {"beta": 1}}},
                                       "metrics": {"metrics/eval.json": {"data": {"test": {"loss": 99.0}}}}},
             "experiments": [
                 {"executor": {"state": "queued"}, "revs": [{"rev": "b" * 40, "name": "q", "data": {
                     "params": {"params.yaml": {"data": {"beta": 8}}},
                     "metrics": {"metrics/eval.json": {"data": {"test": {"loss": 99.0}}}}}}]},
                 {"executor": {"state": "failed"}, "revs": [{"rev": "c" * 40, "name": "f", "error": {"msg": "x"},
                                                             "data": {"params": {"params.yaml": {"data": {}}}}}]}]}]
    runs = {run.name: run for run in runs_of(show, {"a" * 40: ["main"]})}
    assert runs["main"].metric_files == {"metrics/eval.json": {"test.loss": 99.0}}
    assert (runs["q"].status, runs["q"].params, runs["q"].metric_files) == ("queued", {"beta": 8}, {})
    assert (runs["f"].status, runs["f"].baseline) == ("failed", "main")
