// Fill-mask with the mobile-bert-distill student on Android (LiteRT).
//
// Assets (written by `mbd export --android-assets`): model.tflite, vocab.txt, model_info.json.
// Gradle: implementation("com.google.ai.edge.litert:litert:1.4.0")
//
//   val bert = WordPieceBert.fromAssets(context)
//   val fills = bert.fillMask("the capital of [MASK] is paris .", topK = 3)
//   check(bert.checkGolden(context.assets.open("model_info.json").bufferedReader().readText()))
//
// A `--task classifier` export (assets + labels.txt) runs with BertClassifier instead:
//
//   val clf = BertClassifier.fromAssets(context)
//   val (label, probability) = clf.classify("a gorgeous, witty film")

package com.example.mobilebert

import android.content.Context
import org.json.JSONObject
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel
import java.text.Normalizer

/** The training tokenizer: keras-hub uncased BERT pre-tokenization + WordPiece. */
class WordPieceTokenizer(private val vocab: List<String>) {
    private val ids: Map<String, Int> = HashMap<String, Int>().also { m ->
        vocab.forEachIndexed { i, t -> m.putIfAbsent(t, i) }
    }
    val unkId = ids.getValue("[UNK]")
    val maskId = ids.getValue("[MASK]")
    val clsId = ids.getValue("[CLS]")
    val sepId = ids.getValue("[SEP]")

    private fun isCjk(cp: Int) = cp in 0x4E00..0x9FFF || cp in 0x3400..0x4DBF ||
        cp in 0x20000..0x2A6DF || cp in 0x2A700..0x2B73F || cp in 0x2B740..0x2B81F ||
        cp in 0x2B820..0x2CEAF || cp in 0xF900..0xFAFF || cp in 0x2F800..0x2FA1F

    private fun isDelimiter(cp: Int): Boolean {
        if (cp == ' '.code || cp == '\t'.code || cp == '\n'.code || cp == '\r'.code || cp == 0x0C) return true
        val t = Character.getType(cp)
        return t == Character.CONTROL.toInt() || t == Character.FORMAT.toInt()
    }

    private fun isPunctuation(cp: Int): Boolean {
        if (cp in 33..47 || cp in 58..64 || cp in 91..96 || cp in 123..126) return true
        return when (Character.getType(cp).toByte()) {
            Character.CONNECTOR_PUNCTUATION, Character.DASH_PUNCTUATION, Character.START_PUNCTUATION,
            Character.END_PUNCTUATION, Character.INITIAL_QUOTE_PUNCTUATION,
            Character.FINAL_QUOTE_PUNCTUATION, Character.OTHER_PUNCTUATION -> true
            else -> false
        }
    }

    // Default_Ignorable_Code_Point, which NFKC_Casefold deletes.
    private fun isIgnorable(cp: Int) = cp == 0xAD || cp == 0x34F || cp == 0x61C || cp in 0x115F..0x1160 ||
        cp in 0x17B4..0x17B5 || cp in 0x180B..0x180F || cp in 0x200B..0x200F || cp in 0x202A..0x202E ||
        cp in 0x2060..0x206F || cp == 0x3164 || cp in 0xFE00..0xFE0F || cp == 0xFEFF || cp == 0xFFA0 ||
        cp in 0xFFF0..0xFFF8 || cp in 0x1BCA0..0x1BCA3 || cp in 0x1D173..0x1D17A || cp in 0xE0000..0xE0FFF

    // Where case folding differs from lowercase() (after NFKC): Cherokee folds to the capitals,
    // the Cyrillic letter variants to their plain letters, the iota subscript to iota.
    private val cyrillicVariants = intArrayOf(0x432, 0x434, 0x43E, 0x441, 0x442, 0x442, 0x44A, 0x463, 0xA64B)
    private fun foldLowercase(cp: Int) = when (cp) {
        in 0xAB70..0xABBF -> cp - 0xAB70 + 0x13A0
        in 0x13F8..0x13FD -> cp - 8
        in 0x1C80..0x1C88 -> cyrillicVariants[cp - 0x1C80]
        0x345 -> 0x3B9
        else -> cp
    }

    /** NFKC_Casefold (ICU4J's Normalizer2.getNFKCCasefoldInstance() is exact; this needs no ICU4J). */
    private fun caseFold(word: String): String {
        val lower = Normalizer.normalize(word, Normalizer.Form.NFKC).lowercase()
            .replace("ß", "ss").replace("ς", "σ")
        val folded = StringBuilder()
        lower.codePoints().forEach { cp -> if (!isIgnorable(cp)) folded.appendCodePoint(foldLowercase(cp)) }
        return Normalizer.normalize(folded, Normalizer.Form.NFKC)
    }

    fun pretokenize(text: String): List<String> {
        val nfd = Normalizer.normalize(text, Normalizer.Form.NFD)
        val words = ArrayList<String>()
        val cur = StringBuilder()
        var i = 0
        while (i < nfd.length) {
            val cp = nfd.codePointAt(i)
            i += Character.charCount(cp)
            if (Character.getType(cp) == Character.NON_SPACING_MARK.toInt()) continue // strip accents
            when {
                isDelimiter(cp) -> if (cur.isNotEmpty()) { words.add(cur.toString()); cur.setLength(0) }
                isPunctuation(cp) || isCjk(cp) -> {
                    if (cur.isNotEmpty()) { words.add(cur.toString()); cur.setLength(0) }
                    words.add(String(Character.toChars(cp)))
                }
                else -> cur.appendCodePoint(cp)
            }
        }
        if (cur.isNotEmpty()) words.add(cur.toString())
        return words.map(::caseFold).filter { it.isNotEmpty() }
    }

    fun wordPieces(word: String): List<Int> {
        if (word.toByteArray(Charsets.UTF_8).size > 100) return listOf(unkId)
        val out = ArrayList<Int>()
        var start = 0
        while (start < word.length) {
            var end = word.length
            var found = -1
            while (start < end) {
                val sub = (if (start > 0) "##" else "") + word.substring(start, end)
                val id = ids[sub]
                if (id != null) { found = id; break }
                end = word.offsetByCodePoints(end, -1)
            }
            if (found < 0) return listOf(unkId)
            out.add(found)
            start = end
        }
        return out
    }

    /** Token ids for [text]; the literal "[MASK]" is kept as the mask token unless [keepMask] is false
     *  (a classifier reads "[MASK]" as ordinary text, like `LiteRTModel.classify`). */
    fun encode(text: String, keepMask: Boolean = true): List<Int> {
        if (!keepMask) return pretokenize(text).flatMap(::wordPieces)
        val out = ArrayList<Int>()
        text.split("[MASK]").forEachIndexed { i, chunk ->
            if (i > 0) out.add(maskId)
            pretokenize(chunk).forEach { out.addAll(wordPieces(it)) }
        }
        return out
    }
}

data class Fill(val token: String, val id: Int, val probability: Float)

class WordPieceBert(model: MappedByteBuffer, private val vocab: List<String>, val seqLen: Int) {
    val tokenizer = WordPieceTokenizer(vocab)
    private val interpreter = Interpreter(model, Interpreter.Options().setNumThreads(1))
    // the logits [1, S, V] come back in one direct buffer: LiteRT copies into it in one block, where
    // a nested FloatArray would be filled value by value
    private val logits = ByteBuffer.allocateDirect(4 * seqLen * vocab.size).order(ByteOrder.nativeOrder())

    /** `[CLS] pieces [SEP] [PAD]...` (truncated to seqLen), as the model expects. */
    fun inputIds(text: String): IntArray {
        val body = tokenizer.encode(text).take(seqLen - 2)
        val ids = IntArray(seqLen)
        ids[0] = tokenizer.clsId
        body.forEachIndexed { i, id -> ids[i + 1] = id }
        ids[body.size + 1] = tokenizer.sepId
        return ids
    }

    fun fillMask(text: String, topK: Int = 5): Map<Int, List<Fill>> {
        val ids = inputIds(text)
        val mask = IntArray(seqLen) { if (it == 0 || ids[it] != 0) 1 else 0 }
        logits.rewind()
        interpreter.runSignature(
            mapOf("input_ids" to arrayOf(ids), "segment_ids" to arrayOf(IntArray(seqLen)),
                  "padding_mask" to arrayOf(mask)),
            mapOf("logits" to logits), "serving_default")
        logits.rewind()
        val all = logits.asFloatBuffer()
        val result = LinkedHashMap<Int, List<Fill>>()
        ids.forEachIndexed { pos, id ->
            if (id != tokenizer.maskId) return@forEachIndexed
            val row = FloatArray(vocab.size)
            all.position(pos * vocab.size)
            all.get(row)
            val max = row.maxOrNull() ?: 0f
            val exp = row.map { Math.exp((it - max).toDouble()) }
            val sum = exp.sum()
            result[pos] = row.indices.sortedByDescending { row[it] }.take(topK)
                .map { Fill(vocab[it], it, (exp[it] / sum).toFloat()) }
        }
        return result
    }

    /** Compare tokenization and top-3 predictions with model_info.json's golden vectors. */
    fun checkGolden(modelInfoJson: String): Boolean {
        val golden = JSONObject(modelInfoJson).getJSONArray("golden")
        for (g in 0 until golden.length()) {
            val item = golden.getJSONObject(g)
            val text = item.getString("text")
            val want = item.getJSONArray("input_ids")
            val got = inputIds(text)
            for (i in 0 until want.length()) if (got[i] != want.getInt(i)) return false
            val fills = fillMask(text, topK = 3)
            val masks = item.getJSONArray("masks")
            for (m in 0 until masks.length()) {
                val mk = masks.getJSONObject(m)
                val top = fills[mk.getInt("position")] ?: return false
                val ids = mk.getJSONArray("top_ids")
                for (k in 0 until ids.length()) if (top[k].id != ids.getInt(k)) return false
            }
        }
        return true
    }

    companion object {
        fun fromAssets(context: Context): WordPieceBert {
            val info = JSONObject(context.assets.open("model_info.json").bufferedReader().readText())
            val vocab = context.assets.open("vocab.txt").bufferedReader().readLines()
            val fd = context.assets.openFd("model.tflite")
            val model = FileInputStream(fd.fileDescriptor).channel
                .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            return WordPieceBert(model, vocab, info.getInt("seq_len"))
        }
    }
}

/** A `--task classifier` export: output `probabilities` [1, K] over the names in labels.txt. */
class BertClassifier(model: MappedByteBuffer, vocab: List<String>, val labels: List<String>, val seqLen: Int) {
    val tokenizer = WordPieceTokenizer(vocab)
    private val interpreter = Interpreter(model, Interpreter.Options().setNumThreads(1))

    /** `[CLS] pieces [SEP] [PAD]...` (truncated to seqLen) and its length. */
    fun inputIds(text: String): Pair<IntArray, Int> {
        val body = tokenizer.encode(text, keepMask = false).take(seqLen - 2)
        val ids = IntArray(seqLen)
        ids[0] = tokenizer.clsId
        body.forEachIndexed { i, id -> ids[i + 1] = id }
        ids[body.size + 1] = tokenizer.sepId
        return Pair(ids, body.size + 2)
    }

    fun probabilities(text: String): FloatArray {
        val (ids, length) = inputIds(text)
        val mask = IntArray(seqLen) { if (it < length) 1 else 0 }
        val out = Array(1) { FloatArray(labels.size) }
        interpreter.runSignature(
            mapOf("input_ids" to arrayOf(ids), "segment_ids" to arrayOf(IntArray(seqLen)),
                  "padding_mask" to arrayOf(mask)),
            mapOf("probabilities" to out), "serving_default")
        return out[0]
    }

    /** The most probable class name and its probability. */
    fun classify(text: String): Pair<String, Float> {
        val p = probabilities(text)
        val best = p.indices.maxByOrNull { p[it] } ?: 0
        return Pair(labels[best], p[best])
    }

    /** Compare tokenization, label and probabilities with model_info.json's golden vectors. */
    fun checkGolden(modelInfoJson: String, tolerance: Float = 1e-3f): Boolean {
        val golden = JSONObject(modelInfoJson).getJSONArray("golden")
        for (g in 0 until golden.length()) {
            val item = golden.getJSONObject(g)
            val text = item.getString("text")
            val want = item.getJSONArray("input_ids")
            val (ids, length) = inputIds(text)
            if (length != want.length()) return false
            for (i in 0 until want.length()) if (ids[i] != want.getInt(i)) return false
            val p = probabilities(text)
            val probs = item.getJSONArray("probabilities")
            for (k in 0 until probs.length()) if (Math.abs(p[k] - probs.getDouble(k).toFloat()) > tolerance) return false
            if (classify(text).first != item.getString("label")) return false
        }
        return true
    }

    companion object {
        fun fromAssets(context: Context): BertClassifier {
            val info = JSONObject(context.assets.open("model_info.json").bufferedReader().readText())
            val vocab = context.assets.open("vocab.txt").bufferedReader().readLines()
            val labels = context.assets.open("labels.txt").bufferedReader().readLines().filter { it.isNotEmpty() }
            val fd = context.assets.openFd("model.tflite")
            val model = FileInputStream(fd.fileDescriptor).channel
                .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            return BertClassifier(model, vocab, labels, info.getInt("seq_len"))
        }
    }
}
