from __future__ import annotations

import numpy as np
import pytest

from mredit.synth.scene import (
    PALETTE,
    Background,
    Scene,
    SceneObject,
    Texture,
    color_distance,
    nearest_color,
    random_scene,
    render,
    render_layers,
)


def test_render_is_exact_and_deterministic():
    scene = Scene(Background("white"), (SceneObject("square", "red", 0.5, 0.5, 0.25),), resolution=16)
    image = render(scene)
    assert image.shape == (16, 16, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image[8, 8], np.array(PALETTE["red"]) / 255, atol=1e-6)
    np.testing.assert_allclose(image[0, 0], np.array(PALETTE["white"]) / 255, atol=1e-6)
    assert np.array_equal(image, render(scene))


def test_occlusion_and_textures():
    below = SceneObject("circle", "blue", 0.5, 0.5, 0.3)
    above = SceneObject("square", "green", 0.5, 0.5, 0.1, Texture("stripes", "yellow"))
    image, visible = render_layers(Scene(Background("black"), (below, above), resolution=32))
    assert visible[0][16, 16] == 0.0 and visible[1][16, 16] == 1.0
    colors = {nearest_color(image[y, 16]) for y in range(14, 18)}
    assert colors == {"green", "yellow"}  # the stripes alternate inside the square


@pytest.mark.parametrize("resolution", [16, 32])
def test_random_scenes_have_distinct_colours_and_fit(resolution):
    for seed in range(30):
        scene = random_scene(np.random.default_rng(seed), resolution, 4)
        colors = [o.color for o in scene.objects]
        assert 1 <= len(colors) <= 4 and len(set(colors)) == len(colors)
        assert all(color_distance(c, scene.background.color) >= 0.3 for c in colors)
        assert all(o.size <= o.x <= 1 - o.size and o.size <= o.y <= 1 - o.size for o in scene.objects)


def test_scene_round_trip_and_validation():
    scene = random_scene(np.random.default_rng(3), 32, 3)
    assert Scene.from_dict(scene.to_dict()) == scene
    bad = scene.to_dict()
    bad["objects"][0]["color"] = "mauve"
    with pytest.raises(ValueError, match="unknown colour 'mauve'"):
        Scene.from_dict(bad)
    with pytest.raises(ValueError, match="malformed scene"):
        Scene.from_dict({"objects": []})


def test_bounding_box_coverage_matches_the_full_grid():
    from mredit.synth.scene import SUPERSAMPLE, _downsample, _grid, _inside, object_coverage

    objects = [
        o for seed in range(40) for o in random_scene(np.random.default_rng(seed), 16 + seed % 2 * 16, 4).objects
    ]
    objects.append(SceneObject("diamond", "red", 0.05, 0.97, 0.19))  # partly outside the frame
    for obj in objects:
        for res in (16, 32):
            xs, ys = _grid(res, SUPERSAMPLE)
            assert np.array_equal(object_coverage(obj, res), _downsample(_inside(obj, xs, ys), SUPERSAMPLE))
