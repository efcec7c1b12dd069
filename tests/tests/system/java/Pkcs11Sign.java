// A minimal Java SunPKCS11 client for the system tests (java_sunpkcs11.rs): loads
// liblanyard_pkcs11.so through a SunPKCS11 config file, opens the PKCS11 KeyStore
// with the PIN, signs a document with the card's private key entry and verifies the
// signature with the entry's certificate. Prints key=value lines the test checks.
//
// Usage: java Pkcs11Sign CONFIG PIN ALGORITHM   (SHA256withRSA or SHA256withECDSA)

import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Provider;
import java.security.Security;
import java.security.Signature;
import java.security.cert.X509Certificate;
import java.util.Collections;

public class Pkcs11Sign {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: Pkcs11Sign CONFIG PIN ALGORITHM");
            System.exit(2);
        }
        Provider base = Security.getProvider("SunPKCS11");
        if (base == null) {
            System.err.println("this JDK has no SunPKCS11 provider");
            System.exit(3);
        }
        Provider p11 = base.configure(args[0]);
        Security.addProvider(p11);
        System.out.println("provider=" + p11.getName());

        KeyStore ks = KeyStore.getInstance("PKCS11", p11);
        ks.load(null, args[1].toCharArray());
        String keyAlias = null;
        for (String alias : Collections.list(ks.aliases())) {
            boolean isKey = ks.isKeyEntry(alias);
            System.out.println("alias=" + alias + (isKey ? " (key entry)" : " (certificate entry)"));
            // The card's authentication key; its document-signing key (label
            // "… (Digital Signature)") wants the PIN with every signature.
            if (isKey && (keyAlias == null || !alias.contains("(Digital Signature)"))) {
                keyAlias = alias;
            }
        }
        if (keyAlias == null) {
            System.out.println("key_entry=none");
            System.exit(4);
        }
        PrivateKey key = (PrivateKey) ks.getKey(keyAlias, null);
        X509Certificate cert = (X509Certificate) ks.getCertificate(keyAlias);
        System.out.println("key_algorithm=" + key.getAlgorithm());
        System.out.println("subject=" + cert.getSubjectX500Principal().getName());

        byte[] document = "Prescription for patient 943 476 5919: amoxicillin 500 mg"
                .getBytes(StandardCharsets.UTF_8);
        Signature signer = Signature.getInstance(args[2], p11);
        signer.initSign(key);
        signer.update(document);
        byte[] signature = signer.sign();
        System.out.println("signature_bytes=" + signature.length);

        // Verified in software (not by the token) with the certificate's public key.
        Signature verifier = Signature.getInstance(args[2]);
        verifier.initVerify(cert.getPublicKey());
        System.out.println("verifier_provider=" + verifier.getProvider().getName());
        verifier.update(document);
        System.out.println("verified=" + verifier.verify(signature));

        document[0] ^= 1;
        verifier.initVerify(cert.getPublicKey());
        verifier.update(document);
        System.out.println("altered_verified=" + verifier.verify(signature));
    }
}
