"""Measures of what the world asks of a model: how crowded the pairs are, and how the background scene relates to
the verbs (the whole-image shortcut of version 2).

- `crowding(annotations, entities)`: a pair is crowded when the centre of another drawn instance (a person or an
  object that is neither the pair's human nor its target, annotated or not) lies strictly inside the pair's union
  box. HICO-DET's pairs are mostly crowded in this sense: people stand among other people and things.
- `scene_verb_association(scenes, verb_sets)`: the fraction of images whose scene is the home scene of one of
  their verbs, and the same fraction expected when the scene ignores the verbs (chance: each verb has its own home
  scene, so an image with k distinct verbs has k of the N_SCENES scenes as homes).
- `world_statistics(world)`: both, for every split of a built world.
"""
from __future__ import annotations

import numpy as np

from .backgrounds import HOME_SCENE, N_SCENES
from .vocabulary import parse_caption, world_vocabulary


def crowding(annotations, entities) -> dict:
    """How crowded the human-object pairs of a split are.

    Args:
        annotations: HOIAnnotations (1-based inclusive boxes); each distinct (image, human box, target box) is a pair.
        entities: DetectionCache of every drawn instance of the same images (continuous 0-based boxes, labels with
            0 = person), e.g. `WorldData.test_entities`.
    Returns {"pairs": distinct pairs, "crowded": fraction whose union box holds the centre of another instance,
    "with_person" / "with_object": the same for another person / another non-person instance, "others_per_pair":
    mean number of such instances, "shared_target": fraction of pairs whose target is also the target of another
    person's pair, "people_per_image": mean people per image}.
    """
    if entities.num_images != annotations.num_images:
        raise ValueError(f"entities cover {entities.num_images} images, annotations {annotations.num_images}")
    bh, bo = annotations.continuous_boxes()
    rows = np.concatenate([annotations.image_index[:, None].astype(np.float64), bh, bo], 1)
    pairs = np.unique(rows, axis=0)  # [P, 9]: image, human box, target box
    person, thing, counts, shared = (np.zeros(len(pairs), bool), np.zeros(len(pairs), bool),
                                     np.zeros(len(pairs), np.int64), np.zeros(len(pairs), bool))
    for k, row in enumerate(pairs):
        i, h, t = int(row[0]), row[1:5], row[5:9]
        det = entities[i]
        boxes = det.boxes.astype(np.float64)
        own = np.all(np.abs(boxes - h) < 1e-3, 1) | np.all(np.abs(boxes - t) < 1e-3, 1)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        u = np.minimum(h, t)[:2].tolist() + np.maximum(h, t)[2:].tolist()  # union box
        inside = ~own & (cx > u[0]) & (cx < u[2]) & (cy > u[1]) & (cy < u[3])
        person[k], thing[k] = (inside & (det.labels == 0)).any(), (inside & (det.labels != 0)).any()
        counts[k] = int(inside.sum())
        same = (pairs[:, 0] == i) & np.all(pairs[:, 5:9] == t, 1) & ~np.all(pairs[:, 1:5] == h, 1)
        shared[k] = same.any()
    n_people = np.bincount(np.repeat(np.arange(entities.num_images), np.diff(entities.offsets))[entities.labels == 0],
                           minlength=entities.num_images)
    mean = (lambda a: float(a.mean()) if len(a) else float("nan"))  # noqa: E731
    return {"pairs": int(len(pairs)), "crowded": mean(person | thing), "with_person": mean(person),
            "with_object": mean(thing), "others_per_pair": mean(counts), "shared_target": mean(shared),
            "people_per_image": mean(n_people)}


def scene_verb_association(scenes, verb_sets) -> dict:
    """How often an image's scene is the home scene of one of its verbs.

    Args:
        scenes: [N] scene index per image (backgrounds.SCENES; version 1 worlds have none: -1).
        verb_sets: N iterables of the verb indices of each image's pairs (or caption).
    Returns {"images": N, "home": fraction of images whose scene is a home scene of one of their verbs,
    "chance": the mean of |verbs| / N_SCENES (what "home" is when scenes ignore the verbs), "ratio": home /
    chance}. Version 1 scenes (-1) give NaN fractions.
    """
    scenes = np.asarray(scenes, np.int64).reshape(-1)
    sets = [set(int(v) for v in vs) for vs in verb_sets]
    if len(sets) != len(scenes):
        raise ValueError(f"{len(scenes)} scenes but {len(sets)} verb sets")
    if len(scenes) == 0 or (scenes < 0).any():
        return {"images": int(len(scenes)), "home": float("nan"), "chance": float("nan"), "ratio": float("nan")}
    home = np.array([any(HOME_SCENE[v] == s for v in vs) for s, vs in zip(scenes.tolist(), sets)])
    chance = np.array([len({HOME_SCENE[v] for v in vs}) / N_SCENES for vs in sets])
    return {"images": int(len(scenes)), "home": float(home.mean()), "chance": float(chance.mean()),
            "ratio": float(home.mean() / chance.mean()) if chance.mean() > 0 else float("nan")}


def image_verbs(annotations) -> list:
    """Per image of an HOIAnnotations, the set of verb indices of its pairs."""
    out = [set() for _ in range(annotations.num_images)]
    for i, v in zip(annotations.image_index.tolist(), annotations.verb.tolist()):
        out[i].add(v)
    return out


def caption_verbs(captions) -> list:
    """Per caption, the set of verb indices it names."""
    hoi = world_vocabulary().hoi_classes
    return [{int(hoi[c, 0]) for c in parse_caption(cap)} if cap != "a photo of " else set() for cap in captions]


def world_statistics(world) -> dict:
    """{"crowding": {split: `crowding`}, "scenes": {split: `scene_verb_association`}} for a built world
    (`WorldData`): crowding of the train, val and test pairs, scene statistics of those and of the caption pool."""
    splits = {"train": (world.train, world.train_entities), "val": (world.val, world.val_entities),
              "test": (world.test, world.test_entities)}
    out = {"crowding": {k: crowding(a, e) for k, (a, e) in splits.items() if a.num_images},
           "scenes": {k: scene_verb_association(world.scenes[k], image_verbs(a)) for k, (a, _) in splits.items()}}
    out["scenes"]["caption"] = scene_verb_association(world.scenes["caption"], caption_verbs(world.captions))
    return out
