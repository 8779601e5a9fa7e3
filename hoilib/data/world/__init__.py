"""The built-in HOI world: a procedurally generated data set shaped like HICO-DET (the embedded default).

The world reproduces HICO-DET's structure at small scale so that the whole study (CLIP pretraining, zero-shot
protocols, adapters, ablations) runs on a CPU in minutes: 16 objects (person included, also as a target), 16 verbs,
95 HOI classes, small images of articulated people interacting with objects, long-tailed class frequencies,
multi-label pairs, captions for CLIP pretraining, simulated detections and HICO-DET-style zero-shot protocols.

Modules, each building on the ones before it:
    vocabulary    objects, verbs, HOI classes, prompts, captions
    raster        the supersampled rasteriser and primitive helpers
    objects       object shapes and anchors          people        articulated figures and their poses
    interactions  interaction groups (who does what with which object, and how it shows)
    backgrounds   sky, ground and clutter; the scenes of version 2 and every verb's home scene
    scene         composition, layout, gaze and drawing of one image
    generate      class frequencies, splits, annotations
    stats         crowding of the pairs, association of scenes and verbs
    simdet        the simulated detector             protocols     zero-shot protocols by HICO-DET's rules
    store         the on-disk cache (`build_world`)

Two versions (`cfg.world.version`): 1 is the first world (mostly one person, groups apart, backgrounds independent
of the labels), kept byte for byte (`WorldConfig(**VERSION_1)` is its default); 2 (the default) has crowded scenes
whose background misleads a whole-image judgement (see `scene` and `backgrounds`).
`python -m hoilib.data.world --bench | --preview out.png` is the command line (`__main__`).
"""
from .generate import VERSION_1, bench, class_distribution, generate_split
from .stats import crowding, scene_verb_association, world_statistics
from .store import WorldData, build_world
from .vocabulary import OBJECTS, VERBS, make_caption, parse_caption, world_vocabulary

__all__ = ["OBJECTS", "VERBS", "VERSION_1", "WorldData", "bench", "build_world", "class_distribution", "crowding",
           "generate_split", "make_caption", "parse_caption", "scene_verb_association", "world_statistics",
           "world_vocabulary"]
