"""Vision for policies: a ResNet-18-style backbone written in Twin (torchvision's names, so its weights load from
a local file), the image-token encoder shared by ACT and the flow policy, and image preprocessing."""
