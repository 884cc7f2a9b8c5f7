<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="hi_Latn">
<context>
    <name></name>
    <message>
        <source>DreamBooth demo</source>
        <translation>DreamBooth demo</translation>
    </message>
    <message>
        <source>Step {step} of {total}</source>
        <translation>Step {step} / {total}</translation>
    </message>
    <message>
        <source>Done.</source>
        <translation>Ho gaya!</translation>
    </message>
    <message>
        <source>Without prior preservation</source>
        <translation>Prior preservation ke bina</translation>
    </message>
    <message>
        <source>The judge finds the emblem in {rare} of {rare_total} pictures of &quot;a sks shape&quot; ({before} of {before_total} before), and in {kept} of {kept_total} of &quot;a shape&quot;.</source>
        <translation>Judge ko &quot;a sks shape&quot; ki {rare_total} mein se {rare} pictures mein emblem mila (pehle {before_total} mein se {before}), aur &quot;a shape&quot; ki {kept_total} mein se {kept} mein.</translation>
    </message>
    <message>
        <source>Train the demo</source>
        <translation>Demo train karo</translation>
    </message>
    <message>
        <source>After, with prior preservation</source>
        <translation>Baad mein, prior preservation ke saath</translation>
    </message>
    <message>
        <source>After, without it</source>
        <translation>Baad mein, uske bina</translation>
    </message>
    <message>
        <source>With prior preservation</source>
        <translation>Prior preservation ke saath</translation>
    </message>
    <message>
        <source>The pictures of &quot;a shape&quot; changed by {change} % from before.</source>
        <translation>&quot;a shape&quot; ki pictures pehle se {change} % badal gayi.</translation>
    </message>
    <message>
        <source>The demo: teach the rare word (400 steps, under a minute on a CPU)</source>
        <translation>Demo: rare word sikhao (400 steps, CPU pe ek minute se kam)</translation>
    </message>
    <message>
        <source>Before</source>
        <translation>Pehle</translation>
    </message>
    <message>
        <source>Instance pictures: the new thing, with the rare word</source>
        <translation>Instance pictures: nayi cheez, rare word ke saath</translation>
    </message>
    <message>
        <source>Class pictures: what &quot;a shape&quot; meant before (prior preservation)</source>
        <translation>Class pictures: &quot;a shape&quot; ka pehle kya matlab tha (prior preservation)</translation>
    </message>
    <message>
        <source>After the demo&apos;s 400 steps the shapes judge finds the emblem in about 8 of 12 pictures of &quot;a sks shape&quot; (0 before), while &quot;a shape&quot; still draws ordinary circles and squares. That is prior preservation&apos;s work: every step also trains on the class pictures with &quot;a shape&quot;, so learning the new word does not overwrite what the class word meant. Train it once without prior preservation too: then &quot;a shape&quot; turns into the emblem as well.</source>
        <translation>Demo ke 400 steps ke baad shapes judge &quot;a sks shape&quot; ki 12 mein se lagbhag 8 pictures mein emblem dhoondh leta hai (pehle 0), aur &quot;a shape&quot; ab bhi normal circles aur squares banata hai. Yeh prior preservation ka kamaal hai: har step class pictures pe &quot;a shape&quot; ke saath bhi train hota hai, isliye naya word seekhne se class word ka purana matlab mit-ta nahi. Ek baar prior preservation ke bina bhi train karke dekho: tab &quot;a shape&quot; bhi emblem ban jaata hai.</translation>
    </message>
    <message>
        <source>Weight, layer, bias</source>
        <translation>Weight, layer, bias</translation>
    </message>
    <message>
        <source>Training</source>
        <translation>Training</translation>
    </message>
    <message>
        <source>Fine-tuning by freezing</source>
        <translation>Freezing se finetuning</translation>
    </message>
    <message>
        <source>LoRA</source>
        <translation>LoRA</translation>
    </message>
    <message>
        <source>DreamBooth</source>
        <translation>DreamBooth</translation>
    </message>
    <message>
        <source>Merging</source>
        <translation>Merging</translation>
    </message>
    <message>
        <source>Rank r</source>
        <translation>Rank r</translation>
    </message>
    <message>
        <source>Scale (strength)</source>
        <translation>Scale (strength)</translation>
    </message>
    <message>
        <source>Output without LoRA: {base}, with LoRA: {adapted}</source>
        <translation>Bina LoRA output: {base}, LoRA ke saath: {adapted}</translation>
    </message>
    <message>
        <source>The adapter was trained at rank {trained} (the toy-lora preset). Below that, the slider keeps its {rank} strongest directions.</source>
        <translation>Yeh adapter sach mein rank {trained} pe train hua hai (toy-lora preset). Usse kam rank pe slider sirf uski {rank} sabse zaroori directions rakhta hai — memory card pe sirf important files.</translation>
    </message>
    <message>
        <source>Toy hidden layer: LoRA trains r·(d_in + d_out) = {rank}·({d_in} + {d_out}) = {lora} numbers instead of d_in·d_out = {full} ({share}).</source>
        <translation>Toy ki hidden layer: LoRA sirf r·(d_in + d_out) = {rank}·({d_in} + {d_out}) = {lora} numbers train karta hai, d_in·d_out = {full} ki jagah ({share}).</translation>
    </message>
    <message>
        <source>Whole model: the LoRA on its default layers against every weight of the UNet or transformer.</source>
        <translation>Poora model: default layers pe poora LoRA, UNet ya transformer ke saare weights ke muqable.</translation>
    </message>
    <message>
        <source>Shape</source>
        <translation>Shape</translation>
    </message>
    <message>
        <source>Layer: full → LoRA</source>
        <translation>Layer: poora → LoRA</translation>
    </message>
    <message>
        <source>Model and layer</source>
        <translation>Model aur layer</translation>
    </message>
    <message>
        <source>Whole model: full → LoRA</source>
        <translation>Poora model: poora → LoRA</translation>
    </message>
    <message>
        <source>Weight w of LoRA 2</source>
        <translation>LoRA 2 ka weight w</translation>
    </message>
    <message>
        <source>Multiplier m</source>
        <translation>Multiplier m</translation>
    </message>
    <message>
        <source>Merged layer = W + (1 − w)·ΔW₁ + w·ΔW₂, where ΔW = (α/r)·B·A of each LoRA. Both were trained from the same network: LoRA 1 on its task asked the other way round, LoRA 2 on a different task.</source>
        <translation>Merged layer = W + (1 − w)·ΔW₁ + w·ΔW₂, jahan har LoRA ka ΔW = (α/r)·B·A hai. Dono ek hi network se train hue: LoRA 1 ne wahi task ulta seekha, LoRA 2 ne ek alag task.</translation>
    </message>
    <message>
        <source>ΔW₁ (LoRA 1)</source>
        <translation>ΔW₁ (LoRA 1)</translation>
    </message>
    <message>
        <source>merged change</source>
        <translation>merged change</translation>
    </message>
    <message>
        <source>ΔW₂ (LoRA 2)</source>
        <translation>ΔW₂ (LoRA 2)</translation>
    </message>
    <message>
        <source>Add difference: C + m·(A − B). B is the pretrained network, A is B after fine-tuning (here: B with LoRA 1 fused in), C is another model (B with LoRA 2). A − B is exactly what fine-tuning taught; adding it to C gives C that skill too.</source>
        <translation>Add difference: C + m·(A − B). B pretrained network hai, A finetuning ke baad wala B (yahan: B mein LoRA 1 fuse kiya hua), C koi aur model (B ke saath LoRA 2). A − B bilkul wahi hai jo finetuning ne sikhaya; isse C mein jodo toh C ko bhi woh skill mil jaati hai.</translation>
    </message>
    <message>
        <source>A − B: what fine-tuning taught</source>
        <translation>A − B: finetuning ne jo sikhaya</translation>
    </message>
    <message>
        <source>C + m·(A − B) − C</source>
        <translation>C + m·(A − B) − C</translation>
    </message>
    <message>
        <source>Output with LoRA 1: {first}    with LoRA 2: {second}    merged: {merged}</source>
        <translation>LoRA 1 ke saath output: {first}    LoRA 2 ke saath: {second}    merged: {merged}</translation>
    </message>
    <message>
        <source>B (pretrained): {original}    A (fine-tuned): {tuned}    C: {other}    C + m·(A − B): {result}</source>
        <translation>B (pretrained): {original}    A (finetuned): {tuned}    C: {other}    C + m·(A − B): {result}</translation>
    </message>
    <message>
        <source>Two LoRAs, one slider</source>
        <translation>Do LoRA, ek slider</translation>
    </message>
    <message>
        <source>Add difference</source>
        <translation>Add difference</translation>
    </message>
    <message>
        <source>Input x₀</source>
        <translation>Input x₀</translation>
    </message>
    <message>
        <source>Weight w (x₀ → marked neuron)</source>
        <translation>Weight w (x₀ → marked neuron)</translation>
    </message>
    <message>
        <source>Bias b (marked neuron)</source>
        <translation>Bias b (marked neuron)</translation>
    </message>
    <message>
        <source>Input (10)</source>
        <translation>Input (10)</translation>
    </message>
    <message>
        <source>Layer 1 (50)</source>
        <translation>Layer 1 (50)</translation>
    </message>
    <message>
        <source>Layer 2 (50)</source>
        <translation>Layer 2 (50)</translation>
    </message>
    <message>
        <source>Output</source>
        <translation>Output</translation>
    </message>
    <message>
        <source>Move the bias: the neuron&apos;s z shifts by exactly as much, and its σ(z) slides along the S-curve. Near the flat ends of the curve even big changes barely move the output: the neuron is saturated.</source>
        <translation>Bias hilao: neuron ka z bilkul utna hi shift hota hai, aur uska σ(z) S-curve pe slide karta hai. Curve ke flat kinaron pe bade changes bhi output ko mushkil se hilaate hain: neuron saturate ho chuka hai.</translation>
    </message>
    <message>
        <source>The marked neuron of layer 1:</source>
        <translation>Layer 1 ka marked neuron:</translation>
    </message>
    <message>
        <source>(the other 9 inputs)</source>
        <translation>(baaki 9 inputs)</translation>
    </message>
    <message>
        <source>Network output: {value}</source>
        <translation>Network ka output: {value}</translation>
    </message>
    <message>
        <source>Reset</source>
        <translation>Reset</translation>
    </message>
    <message>
        <source>Experiment: {title}</source>
        <translation>Experiment: {title}</translation>
    </message>
    <message>
        <source>Opens the preset “{preset}” on the Train page</source>
        <translation>Train page pe preset “{preset}” kholta hai</translation>
    </message>
    <message>
        <source>Opens the Merge page</source>
        <translation>Merge page kholta hai</translation>
    </message>
    <message>
        <source>Learn</source>
        <translation>Seekho</translation>
    </message>
    <message>
        <source>Language</source>
        <translation>Bhasha</translation>
    </message>
    <message>
        <source>Do this on your own model →</source>
        <translation>Apne model pe yeh karo →</translation>
    </message>
    <message>
        <source>The trainer could not start.</source>
        <translation>Trainer start nahi ho paaya.</translation>
    </message>
    <message>
        <source>Press Start training: the trainer process trains the guide&apos;s network on the toy task for 3,000 steps (about half a minute).</source>
        <translation>Start training dabao: trainer process guide ke network ko toy task pe 3,000 steps train karta hai (lagbhag aadha minute).</translation>
    </message>
    <message>
        <source>Toy run</source>
        <translation>Toy run</translation>
    </message>
    <message>
        <source>The first steps: the loss drops steeply while the weights find their rough direction. Watch the weights view: colours grow where the network learned something.</source>
        <translation>Pehle steps: weights apni rough direction dhoondhte hain aur loss tezi se girta hai. Weights view dekho: jahan network ne kuch seekha, wahan colours gehre hote hain.</translation>
    </message>
    <message>
        <source>Step {step} of {total}: training loss {loss}</source>
        <translation>Step {step} / {total}: training loss {loss}</translation>
    </message>
    <message>
        <source>Now the curves flatten: each step teaches less. The held-out loss (dots) is measured on data the network never trains on: as long as it falls with the training loss, the network is learning the task, not memorising its data.</source>
        <translation>Ab curves flat ho rahe hain: har step kam sikhata hai. Held-out loss (dots) us data pe naapa jaata hai jis pe network kabhi train nahi hota: jab tak yeh training loss ke saath girta hai, network task seekh raha hai, data ratt nahi raha.</translation>
    </message>
    <message>
        <source>The run failed: {message}</source>
        <translation>Run fail ho gaya: {message}</translation>
    </message>
    <message>
        <source>Done: held-out loss {first} → {last}</source>
        <translation>Ho gaya: held-out loss {first} → {last}</translation>
    </message>
    <message>
        <source>Done. The held-out loss fell with the training loss: the network learned the task itself. The network that lessons 3, 4 and 6 start from is exactly this run&apos;s result.</source>
        <translation>Ho gaya! Held-out loss training loss ke saath gira: network ne task hi seekh liya. Lesson 3, 4 aur 6 jis network se shuru hote hain, woh bilkul isi run ka result hai.</translation>
    </message>
    <message>
        <source>Start training</source>
        <translation>Start training</translation>
    </message>
    <message>
        <source>Pretrained, only the output layer trains</source>
        <translation>Pretrained, sirf output layer train hoti hai</translation>
    </message>
    <message>
        <source>Pretrained, every layer trains</source>
        <translation>Pretrained, har layer train hoti hai</translation>
    </message>
    <message>
        <source>From scratch, every layer trains</source>
        <translation>Scratch se, har layer train hoti hai</translation>
    </message>
    <message>
        <source>{run}: step {step} of {total}</source>
        <translation>{run}: step {step} / {total}</translation>
    </message>
    <message>
        <source>Done: three runs of {steps} steps each.</source>
        <translation>Ho gaya: teen runs, har ek {steps} steps ka.</translation>
    </message>
    <message>
        <source>Run the three experiments</source>
        <translation>Teeno experiments chalao</translation>
    </message>
    <message>
        <source>Run</source>
        <translation>Run</translation>
    </message>
    <message>
        <source>Trainable / total</source>
        <translation>Trainable / total</translation>
    </message>
    <message>
        <source>Frozen layers</source>
        <translation>Frozen layers</translation>
    </message>
    <message>
        <source>Held-out loss</source>
        <translation>Held-out loss</translation>
    </message>
    <message>
        <source>input, hidden</source>
        <translation>input, hidden</translation>
    </message>
    <message>
        <source>none</source>
        <translation>koi nahi</translation>
    </message>
    <message>
        <source>bit for bit unchanged</source>
        <translation>bit-by-bit bilkul same</translation>
    </message>
    <message>
        <source>CHANGED</source>
        <translation>BADAL GAYE</translation>
    </message>
    <message>
        <source>Only {trainable} of {total} numbers trained ({share}), yet the fine-tuned network ends at {frozen} held-out loss, against {scratch} from scratch in the same steps. The frozen layers: {unchanged}.</source>
        <translation>{total} mein se sirf {trainable} numbers train hue ({share}), phir bhi finetuned network {frozen} held-out loss pe pahuncha, jabki scratch se utne hi steps mein {scratch}. Frozen layers: {unchanged}.</translation>
    </message>
    <message>
        <source>step</source>
        <translation>step</translation>
    </message>
    <message>
        <source>loss (log scale)</source>
        <translation>loss (log scale)</translation>
    </message>
    <message>
        <source>LR</source>
        <translation>LR (learning rate)</translation>
    </message>
    <message>
        <source>training loss (raw)</source>
        <translation>training loss (kachcha)</translation>
    </message>
    <message>
        <source>training loss (smoothed)</source>
        <translation>training loss (smooth kiya hua)</translation>
    </message>
    <message>
        <source>held-out loss</source>
        <translation>held-out loss (ansuna data)</translation>
    </message>
    <message>
        <source>The loss curve appears here once training starts.</source>
        <translation>Training shuru hote hi loss ka graph yahan aayega.</translation>
    </message>
    <message>
        <source>frozen</source>
        <translation>frozen (jama hua)</translation>
    </message>
    <message>
        <source>The network&apos;s weights and biases appear here once training starts.</source>
        <translation>Training shuru hote hi network ke weights aur biases yahan dikhenge.</translation>
    </message>
    <message>
        <source>Weights and biases at step {step}</source>
        <translation>Step {step} pe weights aur biases</translation>
    </message>
</context>
</TS>
