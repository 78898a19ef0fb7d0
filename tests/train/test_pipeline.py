"""The grain input pipeline (the in-memory path's batches, prefetched, sharded, resumable) and the loop's
one-batch-ahead transfer."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from flax import nnx

from recurrax import train
from recurrax.train._pipeline import ArrayBatches, PipelineReader
from train.train_helpers import ADAM, B, Regressor, leaves_equal, regression_data

TX = ADAM  # one optimizer object: these trainers share one compiled step
DATA = regression_data()  # 12 examples: 3 batches of B per epoch


def _fit(steps, *, pipeline=None, checkpoint=None, resume=False, **kwargs):
    trainer = train.Trainer(Regressor(nnx.Rngs(0)), TX, diagnostics=False)
    trainer.fit(
        DATA,
        steps=steps,
        eval_every=4,
        batch_size=B,
        seed=3,
        input_pipeline=pipeline,
        checkpoint=checkpoint,
        resume=resume,
        progress=False,
        **kwargs,
    )
    return trainer


def _losses(trainer):
    return [row["loss"] for row in trainer.history.steps]


def test_the_pipeline_reads_the_in_memory_batches_and_resumes_exactly(tmp_path):
    pipeline = train.GrainPipeline(prefetch=3, num_threads=2)
    in_memory = _fit(8)  # 8 steps over 3-batch epochs: two reshuffles
    full = _fit(8, pipeline=pipeline)
    assert leaves_equal(full.params, in_memory.params) and leaves_equal(full.opt_state, in_memory.opt_state)
    assert _losses(full) == _losses(in_memory)  # the same batches, step by step

    # 4 steps, a checkpoint holding grain's iterator state, a new trainer that resumes for 4 more.
    _fit(4, pipeline=pipeline, checkpoint=tmp_path)
    with train.Checkpointer(tmp_path) as ckpt:
        meta = ckpt.restore(model_target=nnx.as_pure(nnx.state(in_memory.model))).meta["trainer"]
    assert meta["input_pipeline"] == {"next_index": 4}
    resumed = _fit(8, pipeline=pipeline, checkpoint=tmp_path, resume=True)
    assert resumed.step == 8
    assert leaves_equal(resumed.params, full.params) and leaves_equal(resumed.opt_state, full.opt_state)
    assert _losses(resumed) == _losses(full)
    assert _fit(4, pipeline=pipeline, checkpoint=tmp_path, resume=True).step == 8  # past the end: nothing to read

    # Epoch mode reads the same batches through the pipeline as in memory, too.
    epochs = {}
    for name, source in (("memory", None), ("grain", pipeline)):
        trainer = train.Trainer(Regressor(nnx.Rngs(0)), TX, diagnostics=False)
        trainer.fit(DATA, epochs=2, batch_size=B, seed=3, input_pipeline=source, progress=False)
        epochs[name] = trainer
    assert leaves_equal(epochs["grain"].params, epochs["memory"].params)


def test_each_process_reads_its_block_of_every_global_batch():
    data = regression_data(10)  # batches of 4, 4 and a last one of 2

    def batches(index, count):
        pipeline = train.GrainPipeline(process_index=index, process_count=count)
        read = ArrayBatches(data, num_examples=10, batch_size=4, per_epoch=3, seed=1, shuffle=True, pipeline=pipeline)
        return [read(g) for g in range(6)]  # two epochs

    whole, halves = batches(0, 1), [batches(i, 2) for i in range(2)]
    for g in range(6):
        order = np.random.default_rng([1, g // 3]).permutation(10)  # the in-memory path's epoch order
        np.testing.assert_array_equal(whole[g]["inputs"], data["inputs"][order[(g % 3) * 4 : (g % 3 + 1) * 4]])
        for key in data:
            joined = np.concatenate([halves[0][g][key], halves[1][g][key]])
            np.testing.assert_array_equal(joined, whole[g][key])
    with pytest.raises(ValueError, match=r"a batch of 2 \(2 examples\) must split evenly over process_count=4"):
        batches(0, 4)


def test_the_reader_prefetches_in_background_threads_and_its_state_counts_what_it_returned():
    calls, threads = [], set()

    def batch(g):
        calls.append(g)
        threads.add(threading.current_thread().name)
        return {"g": np.full(2, g)}

    reader = PipelineReader(batch, 20, train.GrainPipeline(prefetch=3, num_threads=1))
    try:
        assert reader.read(0)["g"].tolist() == [0, 0]
        deadline = time.monotonic() + 10
        while len(calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(calls) == [0, 1, 2, 3]  # three batches ahead of the one returned, and no more
        assert all(name.startswith("grain") for name in threads), threads
        assert reader.state() == {"next_index": 1}
        with pytest.raises(RuntimeError, match="the input pipeline is at batch 1, the loop asked for batch 2"):
            reader.read(2)
        reader.seek(7)
        assert reader.read(7)["g"].tolist() == [7, 7]
    finally:
        reader.close()


class _RecordingSource:
    """An endless source that logs each batch request; a callback logs each step's end (after its dispatch)."""

    def __init__(self, events):
        self.events = events

    def batch(self, index, batch_size):
        self.events.append(("batch", index))
        return {k: v[:batch_size] for k, v in DATA.items()}


def test_the_next_batch_is_read_and_sent_before_the_host_waits_on_the_step_before():
    events = []
    record_steps = train.LambdaCallback(on_step_end=lambda trainer, step, metrics: events.append(("step", step)))
    trainer = train.Trainer(Regressor(nnx.Rngs(0)), TX, diagnostics=False)
    events.clear()
    trainer.fit(_RecordingSource(events), steps=4, batch_size=B, log_every=1, callbacks=[record_steps], progress=False)
    events = events[events.index(("step", 1)) - 2 :]  # from the run itself (fit first reads batch 0 to check shapes)
    # Batch k (0-based) is step k + 1's. It is read right after step k is dispatched, before on_step_end(k)
    # and the metric read that follows it; then step k + 1 runs on it.
    assert events == [
        ("batch", 0),
        ("batch", 1),
        ("step", 1),
        ("batch", 2),
        ("step", 2),
        ("batch", 3),
        ("step", 3),
        ("step", 4),
    ]


def test_bad_pipelines_are_refused_by_name():
    with pytest.raises(ValueError, match="prefetch must be an int >= 0, got -1"):
        train.GrainPipeline(prefetch=-1)
    with pytest.raises(ValueError, match="process_index=2 must be below process_count=2"):
        train.GrainPipeline(process_index=2, process_count=2)
    trainer = train.Trainer(Regressor(nnx.Rngs(0)), TX, diagnostics=False)
    with pytest.raises(
        TypeError, match=r"input_pipeline must be a recurrax\.train\.GrainPipeline or None, got 'grain'"
    ):
        trainer.fit(DATA, steps=1, batch_size=B, input_pipeline="grain", progress=False)
    with pytest.raises(ValueError, match="needs a partitioning over every process's devices"):
        trainer.fit(DATA, steps=1, batch_size=B, input_pipeline=train.GrainPipeline(process_count=2), progress=False)
