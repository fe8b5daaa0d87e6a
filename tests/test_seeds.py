"""The one seed scheme (``tf_st.seeds``): every (stream, indices) has its own key, with no
collision by construction, in Python and in a graph alike."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tf_st import seeds


def test_words_are_distinct_over_streams_and_indices():
    words = {}
    for stream in seeds.STREAMS:
        for a, b, c in itertools.product((0, 1, 2, (1 << 24) - 1), (0, 1, 1009), (0, 1, 255)):
            w = int(seeds.word(stream, a, b, c))
            assert w not in words, (stream, a, b, c, words.get(w))
            words[w] = (stream, a, b, c)
    # Seed 1's epoch 2 and seed 2's epoch 1 (the old seed + epoch) differ.
    assert seeds.scalar(1, "data_order", 2) != seeds.scalar(2, "data_order", 1)
    assert seeds.scalar(1, "data_order", 2) != seeds.scalar(1, "augment", 2)


def test_graph_and_python_give_the_same_keys():
    for stream, (a, b, c) in (("evaluation", (3, 17, 2)), ("analysis", (0, 5, 0))):
        eager = seeds.key(7, stream, a, b, c).numpy()
        traced = tf.function(lambda a, b, c: seeds.key(7, stream, a, b, c))(
            tf.constant(a, tf.int64), tf.constant(b, tf.int64), tf.constant(c, tf.int64))
        np.testing.assert_array_equal(eager, traced.numpy())
    assert seeds.scalar(3, "augment", 4) == int(seeds.scalar(tf.constant(3), "augment",
                                                               tf.constant(4)).numpy())


def test_start_noise_keys_per_step_and_draw():
    keys = {tuple(seeds.start_noise_key(1, step, i).numpy()) for step in (0, 1, 2, 1 << 30)
            for i in range(4)}
    assert len(keys) == 16
    assert all(k[0] == 1 and k[1] >> 56 == seeds.STREAMS["start_noise"] for k in keys)


def test_indices_out_of_range_are_refused():
    with pytest.raises(ValueError, match="outside"):
        seeds.word("evaluation", 1 << 24)
    with pytest.raises(ValueError, match="outside"):
        seeds.scalar(1 << 24, "data_order", 0)
    with pytest.raises(ValueError, match="outside"):
        seeds.example_word("unlabeled_crop", 0, 0, [4096])


def test_numpy_streams_differ_by_every_part_of_their_seed():
    draws = {(s, st, a): tuple(seeds.numpy_rng(s, st, a).randint(0, 1 << 30, 4))
             for s in (1, 2) for st in ("unlabeled", "analysis") for a in (1, 2)}
    assert len(set(draws.values())) == len(draws)
