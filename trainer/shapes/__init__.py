"""The shapes world: procedural captioned pictures, a judge of generated ones, and the miniature model.

``world``, ``judge``, ``tokenizer`` and ``demo`` need only numpy and Pillow; ``build`` and ``evaluate``
pull in torch and diffusers (trainer process only).
"""
